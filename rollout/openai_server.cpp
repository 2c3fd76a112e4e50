#include "rollout/openai_server.h"

#include <httplib.h>

#include <chrono>
#include <ctime>
#include <functional>

#include "core/chat_template.h"

namespace tidal::rollout {

using nlohmann::json;

struct OpenAIServer::Pending {
  Request request;
  std::string session;
  bool done = false;
  absl::StatusOr<RequestOutput> result = absl::UnknownError("pending");
};

OpenAIServer::OpenAIServer(Engine* engine, const Tokenizer* tokenizer,
                           OpenAIServerOptions options)
    : engine_(engine), tokenizer_(tokenizer), options_(std::move(options)) {}

OpenAIServer::~OpenAIServer() { Stop(); }

void OpenAIServer::EngineLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !incoming_.empty() || engine_->HasUnfinished(); });
    if (stopping_) break;
    lock.unlock();
    Admit(*engine_);
    if (!engine_->HasUnfinished()) {
      lock.lock();
      continue;
    }
    absl::StatusOr<StepOutput> step = engine_->Step();
    if (!step.ok()) {
      // An engine failure fails every call in flight; the engine decides whether it recovers.
      FailAll(step.status(), engine_);
    } else {
      for (RequestOutput& out : step->finished) Deliver(out);
    }
    lock.lock();
  }
  lock.unlock();
  FailAll(absl::UnavailableError("server stopping"), engine_);
}

bool OpenAIServer::HasWaiting() {
  std::lock_guard<std::mutex> lock(mu_);
  return !incoming_.empty();
}

int64_t OpenAIServer::CallsInFlight() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(incoming_.size() + running_.size());
}

void OpenAIServer::Admit(Engine& engine) {
  std::lock_guard<std::mutex> lock(mu_);
  if (incoming_.empty()) return;
  while (!incoming_.empty()) {
    auto p = std::move(incoming_.front());
    incoming_.pop_front();
    absl::Status added = engine.AddRequest(p->request);
    if (added.ok()) {
      running_[p->request.id] = p;
    } else {
      p->result = added;
      p->done = true;
    }
  }
  cv_.notify_all();
}

bool OpenAIServer::Deliver(RequestOutput& out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = running_.find(out.id);
  if (it == running_.end()) return false;
  it->second->result = std::move(out);
  it->second->done = true;
  running_.erase(it);
  cv_.notify_all();
  return true;
}

void OpenAIServer::FailAll(const absl::Status& status, Engine* engine) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, p] : running_) {
    if (engine) (void)engine->Abort(id);
    p->result = status;
    p->done = true;
  }
  running_.clear();
  for (auto& p : incoming_) {
    p->result = status;
    p->done = true;
  }
  incoming_.clear();
  cv_.notify_all();
}

absl::StatusOr<RequestOutput> OpenAIServer::Generate(Request request) {
  auto p = std::make_shared<Pending>();
  p->request = std::move(request);
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return absl::UnavailableError("server stopping");
  incoming_.push_back(p);
  cv_.notify_all();
  cv_.wait(lock, [&] { return p->done; });
  return std::move(p->result);
}

void OpenAIServer::Record(const std::string& session, const RequestOutput& out) {
  if (session.empty()) return;
  std::lock_guard<std::mutex> lock(sessions_mu_);
  SessionTrajectory& s = open_sessions_[session];
  s.session_id = session;
  s.calls.push_back({out.id, out.prompt, out.tokens, out.logprobs, out.versions,
                     std::string(FinishReasonName(out.finish_reason))});
}

std::vector<SessionTrajectory> OpenAIServer::TakeFinished() {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  return std::exchange(finished_, {});
}

int64_t OpenAIServer::NumOpenSessions() {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  return static_cast<int64_t>(open_sessions_.size());
}

absl::StatusOr<SamplingParams> OpenAIServer::ParamsFrom(const json& body) const {
  SamplingParams p;
  p.max_new_tokens = options_.default_max_tokens;
  try {
    if (body.contains("max_completion_tokens") && !body["max_completion_tokens"].is_null()) {
      p.max_new_tokens = body["max_completion_tokens"].get<int64_t>();
    } else if (body.contains("max_tokens") && !body["max_tokens"].is_null()) {
      p.max_new_tokens = body["max_tokens"].get<int64_t>();
    }
    if (body.contains("temperature") && !body["temperature"].is_null()) {
      p.temperature = body["temperature"].get<double>();
    }
    if (body.contains("top_p") && !body["top_p"].is_null()) p.top_p = body["top_p"].get<double>();
    if (body.contains("stop") && !body["stop"].is_null()) {
      if (body["stop"].is_string()) {
        p.stop_strings.push_back(body["stop"].get<std::string>());
      } else {
        p.stop_strings = body["stop"].get<std::vector<std::string>>();
      }
    }
    if (body.value("n", 1) != 1) return absl::InvalidArgumentError("n: only n=1 is supported");
    if (body.value("stream", false)) {
      return absl::InvalidArgumentError("stream: streaming is not supported");
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("request: a field has the wrong type: ",
                                                   e.what()));
  }
  // The tokenizer's end-of-turn tokens end generation like the model's eos.
  for (TokenId id : tokenizer_->Specials().stop) p.stop_token_ids.push_back(id);
  TIDAL_RETURN_IF_ERROR(p.Validate());
  return p;
}

namespace {

void Error(int code, const std::string& message, int* status, std::string* reply) {
  *status = code;
  *reply = json{{"error", {{"message", message}, {"type", code == 400 ? "invalid_request_error"
                                                                      : "server_error"}}}}
               .dump();
}

std::string SessionOf(const json& body, const std::string& header) {
  if (body.contains("session_id") && body["session_id"].is_string()) {
    return body["session_id"].get<std::string>();
  }
  return header;
}

// vLLM's extension: "return_token_ids": true adds the exact prompt and completion ids, so that an
// agent can continue the conversation token-exactly (a next call with a token-id prompt).
void AddTokenIds(const json& body, const RequestOutput& out, json* choice) {
  if (!body.value("return_token_ids", false)) return;
  (*choice)["prompt_token_ids"] = out.prompt;
  (*choice)["token_ids"] = out.tokens;
}

json Usage(const RequestOutput& out) {
  return {{"prompt_tokens", out.prompt.size()},
          {"completion_tokens", out.tokens.size()},
          {"total_tokens", out.prompt.size() + out.tokens.size()}};
}

}  // namespace

void OpenAIServer::HandleChat(const std::string& raw, const std::string& session_header,
                              int* status, std::string* reply) {
  json body = json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object() || !body.contains("messages") ||
      !body["messages"].is_array()) {
    return Error(400, "expected a JSON object with \"messages\"", status, reply);
  }
  std::vector<ChatMessage> messages;
  for (const auto& m : body["messages"]) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Error(400, "messages: every message needs a string \"role\"", status, reply);
    }
    ChatMessage cm;
    cm.role = m["role"].get<std::string>();
    if (m.contains("content") && m["content"].is_string()) {
      cm.content = m["content"].get<std::string>();
    } else if (m.contains("content") && m["content"].is_array()) {
      for (const auto& part : m["content"]) {  // [{"type":"text","text":...}]
        if (part.is_object() && part.value("type", "") == "text") cm.content += part.value("text", "");
      }
    }
    messages.push_back(std::move(cm));
  }
  auto text = RenderQwenChat(messages);
  if (!text.ok()) return Error(400, std::string(text.status().message()), status, reply);
  const std::string session = SessionOf(body, session_header);
  std::optional<RequestOutput> out = Run(body, tokenizer_->Encode(*text), "chatcmpl-", session, status, reply);
  if (!out) return;
  json choice = {{"index", 0},
                 {"message", {{"role", "assistant"},
                              {"content", tokenizer_->Decode(out->tokens, true)}}},
                 {"finish_reason", FinishReasonName(out->finish_reason)}};
  if (body.value("logprobs", false)) {
    json content = json::array();
    for (size_t i = 0; i < out->tokens.size(); ++i) {
      const std::string tok = tokenizer_->Decode(std::span<const int32_t>(&out->tokens[i], 1));
      json bytes = json::array();
      for (unsigned char c : tok) bytes.push_back(c);
      content.push_back({{"token", tok}, {"logprob", out->logprobs[i]}, {"bytes", bytes},
                         {"top_logprobs", json::array()}});
    }
    choice["logprobs"] = {{"content", content}};
  } else {
    choice["logprobs"] = nullptr;
  }
  Respond(body, *out, session, "chat.completion", std::move(choice), status, reply);
}

void OpenAIServer::HandleCompletion(const std::string& raw, const std::string& session_header,
                                    int* status, std::string* reply) {
  json body = json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object() || !body.contains("prompt")) {
    return Error(400, "expected a JSON object with \"prompt\"", status, reply);
  }
  std::vector<int32_t> prompt_ids;
  const json& prompt = body["prompt"];
  if (prompt.is_string()) {
    prompt_ids = tokenizer_->Encode(prompt.get<std::string>());
  } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
    prompt_ids = prompt.get<std::vector<int32_t>>();  // token ids: no tokenisation at all
  } else if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
    prompt_ids = tokenizer_->Encode(prompt[0].get<std::string>());
  } else {
    return Error(400, "prompt: a string, a list of token ids, or a list of one string", status,
                 reply);
  }
  const std::string session = SessionOf(body, session_header);
  std::optional<RequestOutput> out = Run(body, std::move(prompt_ids), "cmpl-", session, status, reply);
  if (!out) return;
  json choice = {{"index", 0},
                 {"text", tokenizer_->Decode(out->tokens, true)},
                 {"finish_reason", FinishReasonName(out->finish_reason)},
                 {"logprobs", nullptr}};
  if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    json tokens = json::array(), lps = json::array();
    for (size_t i = 0; i < out->tokens.size(); ++i) {
      tokens.push_back(tokenizer_->Decode(std::span<const int32_t>(&out->tokens[i], 1)));
      lps.push_back(out->logprobs[i]);
    }
    choice["logprobs"] = {{"tokens", tokens}, {"token_logprobs", lps}, {"token_ids", out->tokens}};
  }
  Respond(body, *out, session, "text_completion", std::move(choice), status, reply);
}

std::optional<RequestOutput> OpenAIServer::Run(const json& body, std::vector<int32_t> prompt,
                                               const char* id_prefix, const std::string& session,
                                               int* status, std::string* reply) {
  auto params = ParamsFrom(body);
  if (!params.ok()) {
    Error(400, std::string(params.status().message()), status, reply);
    return std::nullopt;
  }
  Request req;
  {
    std::lock_guard<std::mutex> lock(mu_);
    req.id = id_prefix + std::to_string(next_id_++);
  }
  req.prompt = std::move(prompt);
  req.params = *params;
  if (body.contains("seed") && body["seed"].is_number_integer()) req.seed = body["seed"].get<uint64_t>();
  auto out = Generate(std::move(req));
  if (!out.ok()) {
    Error(absl::IsInvalidArgument(out.status()) ? 400 : 500, std::string(out.status().message()), status,
          reply);
    return std::nullopt;
  }
  Record(session, *out);
  return std::move(*out);
}

void OpenAIServer::Respond(const json& body, const RequestOutput& out, const std::string& session,
                           const char* object, json choice, int* status, std::string* reply) {
  AddTokenIds(body, out, &choice);
  json resp = {{"id", out.id},
               {"object", object},
               {"created", static_cast<int64_t>(std::time(nullptr))},
               {"model", options_.model_name},
               {"choices", json::array({std::move(choice)})},
               {"usage", Usage(out)}};
  if (!session.empty()) resp["session_id"] = session;
  *status = 200;
  *reply = resp.dump(-1, ' ', false, json::error_handler_t::replace);
}

void OpenAIServer::HandleReward(const std::string& session, const std::string& raw, int* status,
                                std::string* reply) {
  json body = json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object() || !body.contains("reward") ||
      !body["reward"].is_number()) {
    return Error(400, "expected {\"reward\": number}", status, reply);
  }
  if (const double r = body["reward"].get<double>(); !(r >= options_.reward_low && r <= options_.reward_high)) {
    return Error(400, absl::StrCat("reward ", r, " lies outside env.reward_range [", options_.reward_low, ", ",
                                   options_.reward_high, "]"),
                 status, reply);
  }
  std::lock_guard<std::mutex> lock(sessions_mu_);
  auto it = open_sessions_.find(session);
  if (it == open_sessions_.end()) {
    *status = 404;
    *reply = json{{"error", {{"message", "no open session '" + session + "'"}}}}.dump();
    return;
  }
  SessionTrajectory t = std::move(it->second);
  open_sessions_.erase(it);
  t.reward = body["reward"].get<double>();
  if (body.contains("info")) t.info = body["info"];
  if (body.contains("group") && body["group"].is_string()) t.group = body["group"].get<std::string>();
  *status = 200;
  *reply = json{{"session_id", session}, {"calls", t.calls.size()}, {"reward", t.reward}}.dump();
  finished_.push_back(std::move(t));
}

absl::Status OpenAIServer::Start() {
  http_ = std::make_unique<httplib::Server>();
  // Every POST handler fills a status and a JSON reply.
  using Handler = std::function<void(const httplib::Request&, int*, std::string*)>;
  auto json_post = [this](const std::string& pattern, Handler handle) {
    http_->Post(pattern, [handle = std::move(handle)](const httplib::Request& req, httplib::Response& res) {
      int status = 500;
      std::string reply;
      handle(req, &status, &reply);
      res.status = status;
      res.set_content(reply, "application/json");
    });
  };
  json_post("/v1/chat/completions", [this](const httplib::Request& req, int* status, std::string* reply) {
    HandleChat(req.body, req.get_header_value("X-Session-Id"), status, reply);
  });
  json_post("/v1/completions", [this](const httplib::Request& req, int* status, std::string* reply) {
    HandleCompletion(req.body, req.get_header_value("X-Session-Id"), status, reply);
  });
  json_post(R"(/v1/sessions/([^/]+)/reward)", [this](const httplib::Request& req, int* status, std::string* reply) {
    HandleReward(req.matches[1], req.body, status, reply);
  });
  // vLLM-compatible: {"prompt": "text"} -> {"tokens": [...], "count": n}, the ids a completion
  // prompt of that text would get.
  json_post("/tokenize", [this](const httplib::Request& req, int* status, std::string* reply) {
    json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded() || !body.is_object() || !body.contains("prompt") || !body["prompt"].is_string()) {
      return Error(400, "expected {\"prompt\": string}", status, reply);
    }
    const std::vector<int32_t> ids = tokenizer_->Encode(body["prompt"].get<std::string>());
    *status = 200;
    *reply = json{{"tokens", ids}, {"count", ids.size()}}.dump();
  });
  http_->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"object", "list"},
                         {"data", json::array({{{"id", options_.model_name},
                                                {"object", "model"},
                                                {"owned_by", "tidal"}}})}}
                        .dump(),
                    "application/json");
  });
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.bind.c_str());
  } else {
    port_ = http_->bind_to_port(options_.bind.c_str(), options_.port) ? options_.port : -1;
  }
  if (port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("openai server: cannot bind ", options_.bind, ":", options_.port));
  }
  if (options_.drive_engine) {
    if (!engine_) return absl::InvalidArgumentError("openai server: drive_engine without an engine");
    engine_thread_ = std::thread([this] { EngineLoop(); });
  }
  http_thread_ = std::thread([this] { http_->listen_after_bind(); });
  return absl::OkStatus();
}

void OpenAIServer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !engine_thread_.joinable() && !http_thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (http_) http_->stop();
  if (engine_thread_.joinable()) engine_thread_.join();
  // Owner-driven: nobody steps the engine any more, so release the handlers still waiting.
  if (!options_.drive_engine) FailAll(absl::UnavailableError("server stopping"), nullptr);
  if (http_thread_.joinable()) http_thread_.join();
}

}  // namespace tidal::rollout
