// End to end with the official `openai` Python client against OpenAIServer over a tiny random
// Qwen2 engine: the client's calls work, and the session's recorded trajectory is token-exact
// (prompt ids = our encoding of the chat template, sampled ids decode to the returned text,
// logprobs equal the ones the client received, versions are the engine's).
#include "rollout/openai_server.h"

#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include "core/httplib.h"

#include <atomic>
#include <thread>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/chat_template.h"
#include "core/model.h"
#include "core/model_config.h"

namespace tidal::rollout {
namespace {

using nlohmann::json;

std::string RunPython(const std::string& script, int* rc) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("openai_client_" + std::to_string(::getpid()) + ".py");
  std::ofstream(path) << script;
  std::string out;
  FILE* p = ::popen((std::string(TIDAL_PYTHON) + " " + path.string() + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  *rc = ::pclose(p);
  std::filesystem::remove(path);
  return out;
}

// A tiny random Qwen2 engine over the byte tokenizer's vocabulary.
absl::StatusOr<std::unique_ptr<Engine>> TinyEngine(const Tokenizer& tok) {
  Model model = Model::RandomInit(TinyQwen2Config(64, 2, 4, 2, tok.VocabSize()), 7);
  EngineConfig ec;
  ec.block_size = 8;
  ec.num_blocks = 128;
  ec.eos_token_ids = std::vector<int32_t>{};
  return Engine::Create(model.config(), model.weights(), ec);
}

TEST(OpenAIServerTest, OfficialClientSessionBecomesATokenExactTrajectory) {
  at::set_num_threads(1);
  auto tok = LoadTokenizer("byte");
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto engine = TinyEngine(**tok);
  ASSERT_TRUE(engine.ok()) << engine.status();
  OpenAIServer server(engine->get(), tok->get(), {});
  ASSERT_TRUE(server.Start().ok());

  const std::string script = R"PY(
import json, urllib.request, urllib.error, openai
base = "http://127.0.0.1:)PY" + std::to_string(server.port()) + R"PY("
client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
chat = client.chat.completions.create(
    model="tidal-policy",
    messages=[{"role": "system", "content": "You count."}, {"role": "user", "content": "count r in strawberry:"}],
    max_tokens=12, temperature=1.0, seed=3, logprobs=True, extra_body={"session_id": "s1"})
comp = client.completions.create(model="tidal-policy", prompt="abc", max_tokens=6, temperature=0.7,
                                 logprobs=1, extra_body={"session_id": "s1"})
try:
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], n=2)
    bad = "accepted"
except openai.BadRequestError as e:
    bad = "rejected"
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code
reward_status = post("/v1/sessions/s1/reward", {"reward": 0.5, "info": {"agent": "py"}})
missing_status = post("/v1/sessions/nope/reward", {"reward": 1.0})
models = client.models.list()
print(json.dumps({
    "chat_text": chat.choices[0].message.content,
    "chat_logprobs": [c.logprob for c in chat.choices[0].logprobs.content],
    "chat_finish": chat.choices[0].finish_reason,
    "chat_usage": [chat.usage.prompt_tokens, chat.usage.completion_tokens],
    "comp_text": comp.choices[0].text,
    "comp_logprobs": comp.choices[0].logprobs.token_logprobs,
    "bad": bad, "reward_status": reward_status, "missing_status": missing_status,
    "model": models.data[0].id}))
)PY";
  int rc = 0;
  const std::string out = RunPython(script, &rc);
  ASSERT_EQ(rc, 0) << out;
  const json r = json::parse(out.substr(out.rfind("\n{") == std::string::npos ? 0 : out.rfind("\n{") + 1));
  EXPECT_EQ(r["bad"], "rejected");
  EXPECT_EQ(r["reward_status"], 200);
  EXPECT_EQ(r["missing_status"], 404);
  EXPECT_EQ(r["model"], "tidal-policy");

  auto finished = server.TakeFinished();
  ASSERT_EQ(finished.size(), 1u);
  const SessionTrajectory& t = finished[0];
  EXPECT_EQ(t.session_id, "s1");
  EXPECT_EQ(t.reward, 0.5);
  EXPECT_EQ(t.info["agent"], "py");
  ASSERT_EQ(t.calls.size(), 2u);

  // Call 1 (chat): prompt ids are exactly our encoding of the rendered template.
  const std::vector<ChatMessage> messages = {{"system", "You count."},
                                             {"user", "count r in strawberry:"}};
  auto text = RenderQwenChat(messages);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(t.calls[0].prompt, (*tok)->Encode(*text));
  EXPECT_EQ((*tok)->Decode(t.calls[0].tokens, true), r["chat_text"].get<std::string>());
  ASSERT_EQ(t.calls[0].logprobs.size(), t.calls[0].tokens.size());
  const auto chat_lps = r["chat_logprobs"].get<std::vector<double>>();
  ASSERT_EQ(chat_lps.size(), t.calls[0].tokens.size());
  for (size_t i = 0; i < chat_lps.size(); ++i) {
    EXPECT_FLOAT_EQ(static_cast<float>(chat_lps[i]), t.calls[0].logprobs[i]);
  }
  EXPECT_EQ(r["chat_usage"][0], t.calls[0].prompt.size());
  EXPECT_EQ(r["chat_usage"][1], t.calls[0].tokens.size());
  for (int64_t v : t.calls[0].versions) EXPECT_EQ(v, (*engine)->version());

  // Call 2 (completion).
  EXPECT_EQ(t.calls[1].prompt, (*tok)->Encode("abc"));
  EXPECT_EQ((*tok)->Decode(t.calls[1].tokens, true), r["comp_text"].get<std::string>());
  const auto comp_lps = r["comp_logprobs"].get<std::vector<double>>();
  ASSERT_EQ(comp_lps.size(), t.calls[1].logprobs.size());
  for (size_t i = 0; i < comp_lps.size(); ++i) {
    EXPECT_FLOAT_EQ(static_cast<float>(comp_lps[i]), t.calls[1].logprobs[i]);
  }
  EXPECT_EQ(server.NumOpenSessions(), 0);
  EXPECT_TRUE(server.TakeFinished().empty());
  server.Stop();
}

// Owner-driven mode (how a rollout worker embeds the server): the owner's thread steps the engine
// for its own request and splices the server's calls in with Admit/Deliver; both finish, the
// owner's output never reaches the server, and the reward body's group is kept.
TEST(OpenAIServerTest, OwnerDrivenEngineServesCallsBesideItsOwnWork) {
  at::set_num_threads(1);
  auto tok = LoadTokenizer("byte");
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto engine = TinyEngine(**tok);
  ASSERT_TRUE(engine.ok()) << engine.status();
  OpenAIServerOptions o;
  o.drive_engine = false;
  OpenAIServer server(nullptr, tok->get(), o);
  ASSERT_TRUE(server.Start().ok());

  Request own;
  own.id = "p0.1.0";  // a rollout group's id shape
  own.prompt = (*tok)->Encode("count r in rr:");
  own.params.max_new_tokens = 40;
  ASSERT_TRUE((*engine)->AddRequest(own).ok());

  std::atomic<bool> stop{false};
  std::vector<std::string> owner_finished;
  std::thread owner([&] {
    while (!stop) {
      if (!(*engine)->HasUnfinished() && !server.HasWaiting()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      server.Admit(**engine);
      auto step = (*engine)->Step();
      ASSERT_TRUE(step.ok()) << step.status();
      for (auto& out : step->finished) {
        if (!server.Deliver(out)) owner_finished.push_back(out.id);
      }
    }
  });

  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Post("/v1/completions",
                         R"({"prompt": "abc", "max_tokens": 5, "session_id": "s9", "return_token_ids": true})",
                         "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  const json reply = json::parse(res->body);
  // At most max_tokens: the random model may sample the tokenizer's stop token earlier.
  const int64_t completion = reply["usage"]["completion_tokens"].get<int64_t>();
  EXPECT_GE(completion, 1);
  EXPECT_LE(completion, 5);
  EXPECT_EQ(reply["choices"][0]["prompt_token_ids"].get<std::vector<int32_t>>(), (*tok)->Encode("abc"));
  auto tokenized = client.Post("/tokenize", R"({"prompt": "abc"})", "application/json");
  ASSERT_TRUE(tokenized);
  EXPECT_EQ(json::parse(tokenized->body)["tokens"].get<std::vector<int32_t>>(), (*tok)->Encode("abc"));
  // A reward outside env.reward_range (default [-1e6, 1e6]) is
  // refused and the session stays open for a valid one.
  for (const char* bad : {R"({"reward": 1e308})", R"({"reward": -1e7})"}) {
    auto refused = client.Post("/v1/sessions/s9/reward", bad, "application/json");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400) << bad << ": " << refused->body;
    EXPECT_NE(refused->body.find("env.reward_range"), std::string::npos) << refused->body;
  }
  auto reward = client.Post("/v1/sessions/s9/reward", R"({"reward": 1, "group": "task-3"})",
                            "application/json");
  ASSERT_TRUE(reward);
  EXPECT_EQ(reward->status, 200) << reward->body;
  while ((*engine)->HasUnfinished()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  stop = true;
  owner.join();

  EXPECT_EQ(owner_finished, std::vector<std::string>{"p0.1.0"});
  auto finished = server.TakeFinished();
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_EQ(finished[0].group, "task-3");
  ASSERT_EQ(finished[0].calls.size(), 1u);
  EXPECT_EQ(finished[0].calls[0].prompt, (*tok)->Encode("abc"));
  EXPECT_EQ(static_cast<int64_t>(finished[0].calls[0].tokens.size()), completion);
  EXPECT_EQ(reply["choices"][0]["token_ids"].get<std::vector<int32_t>>(), finished[0].calls[0].tokens);
  EXPECT_EQ(server.CallsInFlight(), 0);
  server.Stop();
}

// Stop() releases a call that waits for an owner who never steps the engine.
TEST(OpenAIServerTest, StopReleasesCallsTheOwnerNeverRan) {
  auto tok = LoadTokenizer("byte");
  ASSERT_TRUE(tok.ok());
  OpenAIServerOptions o;
  o.drive_engine = false;
  OpenAIServer server(nullptr, tok->get(), o);
  ASSERT_TRUE(server.Start().ok());
  std::thread caller([&] {
    httplib::Client client("127.0.0.1", server.port());
    auto res = client.Post("/v1/completions", R"({"prompt": "abc", "max_tokens": 2})", "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 500);
    EXPECT_NE(res->body.find("server stopping"), std::string::npos) << res->body;
  });
  while (server.CallsInFlight() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(server.HasWaiting());
  server.Stop();
  caller.join();
}

}  // namespace
}  // namespace tidal::rollout
