// OpenAIServer: an OpenAI-compatible HTTP endpoint over the rollout engine, so an agent written
// anywhere (the official `openai` client included) can drive the policy, and its calls become
// token-exact training trajectories.
//
//   POST /v1/chat/completions   messages -> Qwen chat format (core/chat_template.h) -> tokens
//   POST /v1/completions        prompt as text or as a list of token ids
//   GET  /v1/models
//   POST /v1/sessions/{id}/reward  {"reward": 1.0, "info": {...}} ends the session
// Supported request fields: model (ignored), max_tokens / max_completion_tokens, temperature,
// top_p, seed, stop (string or list; needs EngineConfig::detokenize), logprobs (+ top_logprobs
// ignored), n = 1 only, no streaming. Other fields are ignored as the OpenAI API does.
//
// Recording: a call carrying a session id ("session_id" in the body, i.e. the client's
// extra_body, or the X-Session-Id header) is recorded exactly as the engine ran it: prompt token
// ids, sampled token ids (the stop token included), their logprobs and policy versions. Text is
// never re-tokenised: what the trainer gets is what was sampled. Reporting the session's reward
// moves it to the finished list that the rollout worker drains with TakeFinished().
//
// Threads: HTTP handlers run on httplib's pool; one engine thread owned by the server is the only
// caller of the Engine from Start() to Stop(), so the caller must not touch the engine meanwhile
// (it may do so again after Stop()). TakeFinished and the session calls are thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
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
};

struct RecordedCall {
  std::string request_id;
  std::vector<int32_t> prompt;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int64_t> versions;
  std::string finish_reason;
};

struct SessionTrajectory {
  std::string session_id;
  std::vector<RecordedCall> calls;  // in the order the calls finished
  double reward = 0.0;
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

  Engine* engine_;
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
