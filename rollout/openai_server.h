// OpenAIServer: an OpenAI-compatible HTTP endpoint over the rollout engine, so an agent written
// anywhere (the official `openai` client included) can drive the policy, and its calls become
// token-exact training trajectories.
//
//   POST /v1/chat/completions   messages (+ tools) -> Qwen chat format (core/chat_template.h)
//   POST /v1/completions        prompt as text or as a list of token ids
//   GET  /v1/models, /v1/models/{id}, /health
//   POST /tokenize                 {"prompt": text} -> {"tokens": [...], "count": n} (vLLM's)
//   POST /v1/sessions/{id}/reward  {"reward": 1.0, "group": "task-7", "info": {...}} ends the
//                                 session ("group" and "info" optional)
// Request fields (both endpoints): model (must be options.model_name), max_tokens,
// temperature, top_p, n, stream (+ stream_options.include_usage: server-sent events, one chunk
// per engine step), stop (string or list; matched by the server on the decoded text, which
// aborts the call in the engine; the stop text is cut from the returned text), seed, user,
// presence/frequency_penalty (0 only), logit_bias (empty only), and the vLLM extensions top_k,
// min_p, ignore_eos, "return_token_ids" (the choice gets "prompt_token_ids" and "token_ids",
// for token-exact multi-turn agents) and session_id. Chat adds max_completion_tokens, logprobs
// + top_logprobs, tools (rendered through the chat template; Qwen <tool_call> blocks in the
// output come back as message.tool_calls, finish_reason "tool_calls"), tool_choice ("auto" or
// "none"), parallel_tool_calls, response_format ({"type": "text"} only). Completions add
// logprobs (an int: the top-k per token), echo (false only), suffix (empty only), best_of (1).
// Anything else, or an unsupported value, is a 400 whose message names the field; so is an
// unknown model name.
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
struct Response;
}

namespace tidal::rollout {

struct OpenAIServerOptions {
  std::string bind = "127.0.0.1";
  int port = 0;  // 0: any free port (see port())
  std::string model_name = "tidal-policy";
  int64_t default_max_tokens = 256;
  bool drive_engine = true;  // false: the owner drives the engine (Admit/Deliver)
  std::string bearer_token;  // non-empty: every request needs it (core/http_auth.h)
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

  // For an owner that drives the engine (drive_engine = false), on its engine thread, around
  // each Engine::Step(): Admit before it, Observe on its output, then Deliver each finished one.
  bool HasWaiting();                 // calls waiting to enter the engine (or to be stopped)
  int64_t CallsInFlight();           // calls waiting or running
  // Aborts calls that hit a stop string or whose stream client left, then moves waiting calls
  // into `engine`.
  void Admit(Engine& engine);
  void Observe(const StepOutput& step);  // this step's tokens of the server's calls
  bool Deliver(RequestOutput& out);  // completes the call `out` belongs to; false if none
  // Fails every waiting and running call (an engine failure); aborts the running ones in
  // `engine` when given.
  void FailAll(const absl::Status& status, Engine* engine);

 private:
  struct Pending;
  struct Call;
  void EngineLoop();
  // Queues one request for the engine; Wait blocks until it finished (or failed).
  std::shared_ptr<Pending> Submit(Request request, std::vector<std::string> stops);
  void Wait(const std::shared_ptr<Pending>& p);
  // Asks the engine thread to abort calls whose client went away.
  void Cancel(const std::vector<std::shared_ptr<Pending>>& calls);
  void Record(const std::string& session, const RequestOutput& out);
  // Both completion endpoints: validate the body into a Call, then answer it whole or streamed.
  void Handle(bool chat, const std::string& body, const std::string& session_header,
              httplib::Response& res);
  absl::StatusOr<Call> ParseCall(bool chat, const std::string& raw, const std::string& session_header) const;
  nlohmann::json Choice(const Call& call, size_t index, const RequestOutput& out) const;
  void Stream(std::shared_ptr<Call> call, httplib::Response& res);
  void HandleReward(const std::string& session, const std::string& body, int* status,
                    std::string* reply);

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
  std::vector<std::string> to_abort_;  // running call ids to abort at the next Admit
  bool stopping_ = false;
  int64_t next_id_ = 0;

  std::mutex sessions_mu_;
  std::map<std::string, SessionTrajectory> open_sessions_;
  std::vector<SessionTrajectory> finished_;
};

}  // namespace tidal::rollout
