// OpenAIServer: an OpenAI-compatible HTTP endpoint over the rollout engine, so an agent written
// anywhere (the official `openai` client included) can drive the policy, and its calls become
// token-exact training trajectories.
//
//   POST /v1/chat/completions   messages -> Qwen chat format (core/chat_template.h) -> tokens
//   POST /v1/completions        prompt as text or as a list of token ids
//   GET  /v1/models
//   POST /tokenize                 {"prompt": text} -> {"tokens": [...], "count": n} (vLLM's)
//   POST /v1/sessions/{id}/reward  {"reward": 1.0, "group": "task-7", "info": {...}} ends the
//                                 session ("group" and "info" optional)
// Supported request fields: model (ignored), max_tokens / max_completion_tokens, temperature,
// top_p, seed, stop (string or list; needs EngineConfig::detokenize), logprobs (+ top_logprobs
// ignored), n = 1 only, no streaming, and vLLM's "return_token_ids" (the choice gets
// "prompt_token_ids" and "token_ids", for token-exact multi-turn agents). Other fields are
// ignored as the OpenAI API does.
//
// Recording: a call carrying a session id ("session_id" in the body, i.e. the client's
// extra_body, or the X-Session-Id header) is recorded exactly as the engine ran it: prompt token
// ids, sampled token ids (the stop token included), their logprobs and policy versions. Text is
// never re-tokenised: what the trainer gets is what was sampled. Reporting the session's reward
// moves it to the finished list that the rollout worker drains with TakeFinished().
//
// Sessions: the reward body may carry "group" (a string): sessions reporting the same group are
// alternative attempts at one task, which the controller trains as one GRPO group.
//
// Threads: HTTP handlers run on httplib's pool and block until the engine has run their call.
// Who drives the engine is the owner's choice (OpenAIServerOptions::drive_engine):
// - true (standalone): one engine thread owned by the server is the only caller of the Engine
//   from Start() to Stop(); the caller must not touch the engine meanwhile.
// - false (inside a rollout worker): the owner's thread keeps driving its engine for its own
//   work too, and splices the server's calls in: Admit(engine) before each Engine::Step(), and
//   Deliver(output) for each finished output (false: not one of the server's calls). Server
//   call ids start with "chatcmpl-" or "cmpl-", so they cannot collide with the owner's ids.
// TakeFinished, the session calls, HasWaiting and CallsInFlight are thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "core/tokenizer.h"
#include "rollout/engine.h"

namespace httplib {
class Server;
}

namespace tidal::rollout {

struct OpenAIServerOptions {
  std::string bind = "127.0.0.1";
  int port = 0;  // 0: any free port (see port())
  std::string model_name = "tidal-policy";
  int64_t default_max_tokens = 256;
  bool drive_engine = true;  // false: the owner drives the engine (Admit/Deliver)
  // A reported reward outside [low, high] is answered 400 and the session stays open
  // (env.reward_range): a runaway value would poison the advantages of its whole group.
  double reward_low = -1e6, reward_high = 1e6;
};

struct RecordedCall {
  std::string request_id;
  std::vector<int32_t> prompt;  // exactly what the engine was given
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int64_t> versions;
  std::string finish_reason;
};

struct SessionTrajectory {
  std::string session_id;
  std::vector<RecordedCall> calls;  // in the order the calls finished
  double reward = 0.0;
  std::string group;  // the reward body's "group" ("" = none)
  nlohmann::json info = nlohmann::json::object();
};

class OpenAIServer {
 public:
  OpenAIServer(Engine* engine, const Tokenizer* tokenizer, OpenAIServerOptions options);
  ~OpenAIServer();

  absl::Status Start();
  // Stops serving, aborts unfinished calls, joins the engine thread.
  void Stop();
  int port() const { return port_; }

  // Sessions whose reward has been reported, oldest first; each is returned once.
  std::vector<SessionTrajectory> TakeFinished();
  // Sessions with recorded calls and no reward yet.
  int64_t NumOpenSessions();

  // For an owner that drives the engine (drive_engine = false), on its engine thread:
  bool HasWaiting();                 // calls waiting to enter the engine
  int64_t CallsInFlight();           // calls waiting or running
  void Admit(Engine& engine);        // moves waiting calls into `engine`
  bool Deliver(RequestOutput& out);  // completes the call `out` belongs to; false if none
  // Fails every waiting and running call (an engine failure); aborts the running ones in
  // `engine` when given.
  void FailAll(const absl::Status& status, Engine* engine);

 private:
  struct Pending;
  void EngineLoop();
  // Runs one request through the engine thread and waits for its output.
  absl::StatusOr<RequestOutput> Generate(Request request);
  void Record(const std::string& session, const RequestOutput& out);
  void HandleChat(const std::string& body, const std::string& session_header, int* status,
                  std::string* reply);
  void HandleCompletion(const std::string& body, const std::string& session_header,
                        int* status, std::string* reply);
  void HandleReward(const std::string& session, const std::string& body, int* status,
                    std::string* reply);
  absl::StatusOr<SamplingParams> ParamsFrom(const nlohmann::json& body) const;
  // What both completion endpoints share: sampling params from the body, the engine call and
  // the session record; on failure the error reply is written and nullopt returned.
  std::optional<RequestOutput> Run(const nlohmann::json& body, std::vector<int32_t> prompt,
                                   const char* id_prefix, const std::string& session, int* status,
                                   std::string* reply);
  // Writes the 200 reply around `choice` (token ids added when the body asks for them).
  void Respond(const nlohmann::json& body, const RequestOutput& out, const std::string& session,
               const char* object, nlohmann::json choice, int* status, std::string* reply);

  Engine* engine_;  // null when the owner drives the engine
  const Tokenizer* tokenizer_;
  OpenAIServerOptions options_;
  std::unique_ptr<httplib::Server> http_;
  std::thread http_thread_, engine_thread_;
  int port_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Pending>> incoming_;
  std::map<std::string, std::shared_ptr<Pending>> running_;
  bool stopping_ = false;
  int64_t next_id_ = 0;

  std::mutex sessions_mu_;
  std::map<std::string, SessionTrajectory> open_sessions_;
  std::vector<SessionTrajectory> finished_;
};

}  // namespace tidal::rollout
