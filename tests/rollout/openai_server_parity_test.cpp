// OpenAI API parity of OpenAIServer, checked with the official `openai` Python client: streaming
// (SSE) equals the whole answer, n > 1, stop strings, top_logprobs, tools rendered through the
// chat template and tool calls parsed back, /health and /v1/models/{id}, and a 400 naming the
// field for what is not supported.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include "core/httplib.h"

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/byte_tokenizer.h"
#include "core/chat_template.h"
#include "core/model.h"
#include "core/model_config.h"
#include "rollout/openai_server.h"

namespace tidal::rollout {
namespace {

using nlohmann::json;

bool HaveClient() {
  return std::filesystem::exists(TIDAL_PYTHON) &&
         std::system((std::string(TIDAL_PYTHON) + " -c 'import openai' >/dev/null 2>&1").c_str()) == 0;
}

// Runs `script` with the server's base URL as BASE; returns the JSON object it printed last.
json RunClient(const std::string& script, int port) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("openai_parity_" + std::to_string(::getpid()) + ".py");
  std::ofstream(path) << "import json, openai, urllib.request, urllib.error\nBASE = 'http://127.0.0.1:"
                      << port << "'\nclient = openai.OpenAI(base_url=BASE + '/v1', api_key='unused')\n"
                      << script;
  std::string out;
  FILE* p = ::popen((std::string(TIDAL_PYTHON) + " " + path.string() + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = ::pclose(p);
  std::filesystem::remove(path);
  EXPECT_EQ(rc, 0) << out;
  const size_t at = out.rfind("\n{");
  json j = json::parse(out.substr(at == std::string::npos ? 0 : at + 1), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  return j;
}

absl::StatusOr<std::unique_ptr<Engine>> TinyEngine(const Tokenizer& tok) {
  Model model = Model::RandomInit(TinyQwen2Config(64, 2, 4, 2, tok.VocabSize()), 7);
  EngineConfig ec;
  ec.block_size = 8;
  ec.num_blocks = 256;
  ec.eos_token_ids = std::vector<int32_t>{};
  return Engine::Create(model.config(), model.weights(), ec);
}

class OpenAIParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveClient()) GTEST_SKIP() << "no python with the openai package at " << TIDAL_PYTHON;
    at::set_num_threads(1);
    tok_ = *LoadTokenizer("byte");
    auto engine = TinyEngine(*tok_);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(OpenAIParityTest, StreamingNStopAndTopLogprobsMatchTheWholeAnswers) {
  OpenAIServer server(engine_.get(), tok_.get(), {});
  ASSERT_TRUE(server.Start().ok());
  const json r = RunClient(R"PY(
msgs = [{"role": "user", "content": "count r in strawberry:"}]
kw = dict(model="tidal-policy", max_tokens=16, temperature=1.0, seed=11, extra_body={"ignore_eos": True})
whole = client.chat.completions.create(messages=msgs, **kw)
chunks = list(client.chat.completions.create(messages=msgs, stream=True, stream_options={"include_usage": True}, **kw))
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
usage = [c.usage.completion_tokens for c in chunks if c.usage]
cwhole = client.completions.create(prompt="abc", **kw)
cstream = "".join(c.choices[0].text for c in client.completions.create(prompt="abc", stream=True, **kw))

# n = 3: choice i is the single call with seed + i.
many = client.chat.completions.create(messages=msgs, n=3, **kw)
singles = [client.chat.completions.create(messages=msgs, **dict(kw, seed=11 + i)).choices[0].message.content for i in range(3)]
many_stream = {}
for c in client.chat.completions.create(messages=msgs, n=3, stream=True, **kw):
    for ch in c.choices:
        many_stream[ch.index] = many_stream.get(ch.index, "") + (ch.delta.content or "")

# Stop strings: a piece of the greedy answer ends it there (whole and streamed).
g = dict(model="tidal-policy", max_tokens=24, temperature=0, extra_body={"ignore_eos": True})
greedy = client.completions.create(prompt="hello", **g).choices[0].text
stop = greedy[5:7]
stopped = client.completions.create(prompt="hello", stop=[stop, "\u2603never"], **g).choices[0]
stopped_stream = "".join(c.choices[0].text for c in client.completions.create(prompt="hello", stop=stop, stream=True, **g))

tl = client.chat.completions.create(messages=msgs, logprobs=True, top_logprobs=3, **g).choices[0].logprobs.content
ctl = client.completions.create(prompt="abc", logprobs=2, **g).choices[0].logprobs

def status(method, path, body=None):
    req = urllib.request.Request(BASE + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code
print(json.dumps({
    "whole": whole.choices[0].message.content, "streamed": streamed, "finish": finish, "usage": usage,
    "whole_tokens": whole.usage.completion_tokens,
    "cwhole": cwhole.choices[0].text, "cstream": cstream,
    "many": [c.message.content for c in many.choices], "many_index": [c.index for c in many.choices],
    "singles": singles, "many_stream": [many_stream[i] for i in range(3)], "many_usage": many.usage.completion_tokens,
    "greedy": greedy, "stop": stop, "stopped": stopped.text, "stopped_finish": stopped.finish_reason,
    "stopped_stream": stopped_stream,
    "top": [[(t.token, t.logprob) for t in c.top_logprobs] for c in tl], "sampled": [(c.token, c.logprob) for c in tl],
    "ctop": ctl.top_logprobs, "ctokens": ctl.tokens,
    "health": status("GET", "/health"), "model_ok": client.models.retrieve("tidal-policy").id,
    "model_missing": status("GET", "/v1/models/gpt-4")}))
)PY", server.port());
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["streamed"], r["whole"]);
  EXPECT_EQ(r["finish"], json({"length"}));
  EXPECT_EQ(r["usage"], json({r["whole_tokens"]}));
  EXPECT_EQ(r["cstream"], r["cwhole"]);
  EXPECT_EQ(r["many_index"], json({0, 1, 2}));
  EXPECT_EQ(r["many"], r["singles"]);
  EXPECT_EQ(r["many_stream"], r["singles"]);
  EXPECT_EQ(r["many_usage"], 48);
  const std::string greedy = r["greedy"], stop = r["stop"], stopped = r["stopped"];
  ASSERT_GE(greedy.size(), 7u);
  EXPECT_EQ(stopped, greedy.substr(0, greedy.find(stop)));
  EXPECT_EQ(r["stopped_finish"], "stop");
  EXPECT_EQ(r["stopped_stream"], stopped);
  // Greedy: the sampled token is the most likely one, and the top list is sorted.
  ASSERT_EQ(r["top"].size(), 24u);
  for (size_t i = 0; i < r["top"].size(); ++i) {
    const json& top = r["top"][i];
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0][0], r["sampled"][i][0]);
    EXPECT_FLOAT_EQ(top[0][1].get<float>(), r["sampled"][i][1].get<float>());
    EXPECT_GE(top[0][1].get<double>(), top[1][1].get<double>());
    EXPECT_GE(top[1][1].get<double>(), top[2][1].get<double>());
  }
  ASSERT_EQ(r["ctop"].size(), r["ctokens"].size());
  EXPECT_LE(r["ctop"][0].size(), 2u);  // two entries, fewer if two tokens decode alike
  EXPECT_EQ(r["health"], 200);
  EXPECT_EQ(r["model_ok"], "tidal-policy");
  EXPECT_EQ(r["model_missing"], 404);
  server.Stop();
}

TEST_F(OpenAIParityTest, UnsupportedFieldsGetA400NamingThem) {
  OpenAIServer server(engine_.get(), tok_.get(), {});
  ASSERT_TRUE(server.Start().ok());
  const json r = RunClient(R"PY(
msgs = [{"role": "user", "content": "hi"}]
def err(**kw):
    try:
        (client.completions if "prompt" in kw else client.chat.completions).create(**kw)
        return "accepted"
    except openai.BadRequestError as e:
        return e.body["message"] if isinstance(e.body, dict) else str(e)
print(json.dumps({
    "format": err(model="tidal-policy", messages=msgs, response_format={"type": "json_object"}),
    "echo": err(model="tidal-policy", prompt="abc", echo=True),
    "model": err(model="gpt-4", messages=msgs),
    "unknown": err(model="tidal-policy", messages=msgs, extra_body={"guided_json": {}}),
    "tool_choice": err(model="tidal-policy", messages=msgs, tool_choice="required",
                       tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    "penalty": err(model="tidal-policy", messages=msgs, presence_penalty=0.5),
    "session_n": err(model="tidal-policy", messages=msgs, n=2, extra_body={"session_id": "s"}),
    "top_without": err(model="tidal-policy", messages=msgs, top_logprobs=2),
    "text_format": err(model="tidal-policy", messages=msgs, max_tokens=2, response_format={"type": "text"})}))
)PY", server.port());
  ASSERT_TRUE(r.is_object());
  const std::vector<std::pair<const char*, const char*>> expect = {
      {"format", "response_format"}, {"echo", "echo"}, {"model", "model"}, {"unknown", "guided_json"},
      {"tool_choice", "tool_choice"}, {"penalty", "presence_penalty"}, {"session_n", "n"},
      {"top_without", "top_logprobs"}};
  for (const auto& [key, field] : expect) {
    const std::string msg = r[key];
    EXPECT_EQ(msg.rfind(std::string(field) + ":", 0), 0u) << key << ": " << msg;
  }
  EXPECT_EQ(r["text_format"], "accepted");
  server.Stop();
}

// Tool calls need a model that writes them: here the owner-driven server's engine output is
// scripted (the test is the owner: it admits each call into a real engine, takes it out again and
// feeds the server a Qwen <tool_call> answer token by token through Observe, then Deliver). The
// prompt the engine got is checked against the chat template with the tools block.
TEST_F(OpenAIParityTest, ToolsAreRenderedAndToolCallsParsedBack) {
  OpenAIServerOptions o;
  o.drive_engine = false;
  OpenAIServer server(nullptr, tok_.get(), o);
  ASSERT_TRUE(server.Start().ok());
  const std::string answer =
      "Let me compute.\n<tool_call>\n{\"name\": \"calc\", \"arguments\": {\"expr\": \"2+3\"}}\n</tool_call>";
  std::vector<int32_t> script = tok_->Encode(answer);
  script.push_back(ByteTokenizer::kImEnd);
  std::atomic<bool> stop{false};
  std::vector<std::vector<int32_t>> prompts;
  std::thread owner([&] {
    int64_t next = 0;
    while (!stop) {
      server.Admit(*engine_);
      absl::StatusOr<RequestOutput> out = engine_->Abort("chatcmpl-" + std::to_string(next));
      if (!out.ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      ++next;
      prompts.push_back(out->prompt);
      for (int32_t t : script) {
        StepOutput step;
        step.tokens.push_back({out->id, t, -0.25f, 0, {}});
        server.Observe(step);
        out->tokens.push_back(t);
        out->logprobs.push_back(-0.25f);
        out->versions.push_back(0);
      }
      out->finish_reason = FinishReason::kStop;
      server.Deliver(*out);
    }
  });
  const json r = RunClient(R"PY(
tools = [{"type": "function", "function": {"name": "calc", "description": "Evaluate",
          "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]}}}]
msgs = [{"role": "user", "content": "2+3?"}]
m = client.chat.completions.create(model="tidal-policy", messages=msgs, tools=tools, extra_body={"session_id": "t1"})
deltas = list(client.chat.completions.create(model="tidal-policy", messages=msgs, tools=tools, stream=True))
calls = [tc for c in deltas for tc in (c.choices[0].delta.tool_calls or []) if c.choices]
content = "".join(c.choices[0].delta.content or "" for c in deltas if c.choices)
plain = client.chat.completions.create(model="tidal-policy", messages=msgs, tools=tools, tool_choice="none")
# The next turn sends the call and its result back: rendered through the template again.
msgs2 = msgs + [m.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": m.choices[0].message.tool_calls[0].id, "content": "5"}]
client.chat.completions.create(model="tidal-policy", messages=msgs2, tools=tools)
print(json.dumps({
    "content": m.choices[0].message.content, "finish": m.choices[0].finish_reason,
    "calls": [(c.function.name, json.loads(c.function.arguments), c.type) for c in m.choices[0].message.tool_calls],
    "stream_calls": [(c.function.name, json.loads(c.function.arguments)) for c in calls], "stream_content": content,
    "stream_finish": [c.choices[0].finish_reason for c in deltas if c.choices and c.choices[0].finish_reason],
    "plain_content": plain.choices[0].message.content, "plain_calls": plain.choices[0].message.tool_calls}))
)PY", server.port());
  stop = true;
  owner.join();
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["content"], "Let me compute.");
  EXPECT_EQ(r["finish"], "tool_calls");
  EXPECT_EQ(r["calls"], json::parse(R"([["calc", {"expr": "2+3"}, "function"]])"));
  EXPECT_EQ(r["stream_calls"], json::parse(R"([["calc", {"expr": "2+3"}]])"));
  EXPECT_EQ(r["stream_content"], "Let me compute.");
  EXPECT_EQ(r["stream_finish"], json({"tool_calls"}));
  EXPECT_EQ(r["plain_content"], answer);  // tool_choice "none": no parsing
  EXPECT_TRUE(r["plain_calls"].is_null());

  // What the engine was given: the template with the tools block, then the tool round trip.
  ASSERT_EQ(prompts.size(), 4u);
  ChatTemplateOptions options;
  options.tools.push_back(TemplateToJson(nlohmann::ordered_json::parse(
      R"({"type": "function", "function": {"name": "calc", "description": "Evaluate", "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]}}})")));
  std::vector<ChatMessage> first = {{.role = "user", .content = "2+3?"}};
  EXPECT_EQ(prompts[0], tok_->Encode(*RenderQwenChat(first, options)));
  std::vector<ChatMessage> second = first;
  second.push_back({.role = "assistant", .content = "Let me compute.", .tool_calls = {{"calc", R"({"expr":"2+3"})"}}});
  second.push_back({.role = "tool", .content = "5"});
  EXPECT_EQ(prompts[3], tok_->Encode(*RenderQwenChat(second, options)));
  // The session recorded exactly the scripted tokens.
  ASSERT_EQ(server.NumOpenSessions(), 1);
  server.Stop();
}

}  // namespace
}  // namespace tidal::rollout
