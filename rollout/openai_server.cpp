#include "rollout/openai_server.h"

#include "core/http_auth.h"

#include "core/httplib.h"

#include <chrono>
#include <ctime>
#include <functional>
#include <set>

#include "core/chat_template.h"
#include "core/metrics.h"

namespace tidal::rollout {

using nlohmann::json;

// One engine request of a call (a call with n > 1 has n of them). The fields after `request`
// are guarded by OpenAIServer::mu_.
struct OpenAIServer::Pending {
  Request request;
  std::vector<std::string> stops;  // matched by the server on the decoded text
  std::vector<int32_t> tokens;     // observed so far (Observe), for streams and stop strings
  std::vector<float> logprobs;
  std::vector<std::vector<TopLogprob>> top;  // per token, when the params ask for them
  bool abort_requested = false;
  bool cancelled = false;  // the client left: the output is dropped, not recorded
  bool done = false;
  absl::StatusOr<RequestOutput> result = absl::UnknownError("pending");
};

// A validated request body.
struct OpenAIServer::Call {
  bool chat = false;
  std::vector<int32_t> prompt;
  SamplingParams params;
  std::vector<std::string> stops;
  std::optional<uint64_t> seed;
  int n = 1;
  bool stream = false, include_usage = false;
  bool logprobs = false;    // chat: per-token logprobs; completions: logprobs given
  bool tools = false;       // parse <tool_call> blocks back into tool_calls
  bool token_ids = false;   // return_token_ids
  std::string session;
  std::string id;
  int64_t created = 0;
  std::vector<std::shared_ptr<Pending>> pending;
};

namespace {

void Error(int code, const std::string& message, int* status, std::string* reply) {
  *status = code;
  *reply = json{{"error", {{"message", message},
                           {"type", code == 400 ? "invalid_request_error"
                                                : code == 404 ? "not_found_error" : "server_error"}}}}
               .dump();
}

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// Earliest occurrence of any stop string in `text`: {position, length}; npos if none.
std::pair<size_t, size_t> FindStop(std::string_view text, const std::vector<std::string>& stops) {
  std::pair<size_t, size_t> best{std::string_view::npos, 0};
  for (const std::string& s : stops) {
    const size_t at = text.find(s);
    if (at < best.first) best = {at, s.size()};
  }
  return best;
}

// Bytes at the end of `text` that a stream must hold back: a possible start of a stop string,
// or an unfinished UTF-8 character (decoded as U+FFFD until its last byte arrives).
size_t HoldBack(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops) {
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k) {
      if (text.substr(text.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  if (text.ends_with(kReplacement)) hold = std::max(hold, kReplacement.size());
  return std::min(hold, text.size());
}

json Bytes(std::string_view s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(c);
  return b;
}

}  // namespace

OpenAIServer::OpenAIServer(Engine* engine, const Tokenizer* tokenizer,
                           OpenAIServerOptions options)
    : engine_(engine), tokenizer_(tokenizer), options_(std::move(options)) {}

OpenAIServer::~OpenAIServer() { Stop(); }

void OpenAIServer::EngineLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] {
      return stopping_ || !incoming_.empty() || !to_abort_.empty() || engine_->HasUnfinished();
    });
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
      Observe(*step);
      for (RequestOutput& out : step->finished) Deliver(out);
    }
    lock.lock();
  }
  lock.unlock();
  FailAll(absl::UnavailableError("server stopping"), engine_);
}

bool OpenAIServer::HasWaiting() {
  std::lock_guard<std::mutex> lock(mu_);
  return !incoming_.empty() || !to_abort_.empty();
}

int64_t OpenAIServer::CallsInFlight() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(incoming_.size() + running_.size());
}

void OpenAIServer::Admit(Engine& engine) {
  std::lock_guard<std::mutex> lock(mu_);
  if (incoming_.empty() && to_abort_.empty()) return;
  for (const std::string& id : to_abort_) {
    auto it = running_.find(id);
    if (it == running_.end()) continue;  // finished in the same step
    Pending& p = *it->second;
    absl::StatusOr<RequestOutput> out = engine.Abort(id);
    // A stop string ends the call like a stop token; its tokens are what the engine sampled.
    if (out.ok()) out->finish_reason = p.cancelled ? FinishReason::kAbort : FinishReason::kStop;
    p.result = std::move(out);
    p.done = true;
    running_.erase(it);
  }
  to_abort_.clear();
  while (!incoming_.empty()) {
    auto p = std::move(incoming_.front());
    incoming_.pop_front();
    if (p->cancelled) {
      p->result = absl::CancelledError("client disconnected");
      p->done = true;
      continue;
    }
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

void OpenAIServer::Observe(const StepOutput& step) {
  std::lock_guard<std::mutex> lock(mu_);
  bool any = false;
  for (const TokenEvent& e : step.tokens) {
    auto it = running_.find(e.request_id);
    if (it == running_.end()) continue;
    Pending& p = *it->second;
    p.tokens.push_back(e.token);
    p.logprobs.push_back(e.logprob);
    if (p.request.params.top_logprobs > 0) p.top.push_back(e.top_logprobs);
    any = true;
    if (!p.stops.empty() && !p.abort_requested &&
        FindStop(tokenizer_->Decode(p.tokens, true), p.stops).first != std::string::npos) {
      p.abort_requested = true;
      to_abort_.push_back(e.request_id);
    }
  }
  if (any) cv_.notify_all();
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
  to_abort_.clear();
  for (auto& p : incoming_) {
    p->result = status;
    p->done = true;
  }
  incoming_.clear();
  cv_.notify_all();
}

std::shared_ptr<OpenAIServer::Pending> OpenAIServer::Submit(Request request,
                                                            std::vector<std::string> stops) {
  auto p = std::make_shared<Pending>();
  p->request = std::move(request);
  p->stops = std::move(stops);
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) {
    p->result = absl::UnavailableError("server stopping");
    p->done = true;
    return p;
  }
  incoming_.push_back(p);
  cv_.notify_all();
  return p;
}

void OpenAIServer::Wait(const std::shared_ptr<Pending>& p) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return p->done; });
}

void OpenAIServer::Cancel(const std::vector<std::shared_ptr<Pending>>& calls) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& p : calls) {
    if (p->done) continue;
    p->cancelled = true;
    if (running_.count(p->request.id) && !p->abort_requested) {
      p->abort_requested = true;
      to_abort_.push_back(p->request.id);
    }
  }
  cv_.notify_all();
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

absl::StatusOr<OpenAIServer::Call> OpenAIServer::ParseCall(bool chat, const std::string& raw,
                                                           const std::string& session_header) const {
  json body = json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) return Bad("body", "expected a JSON object");
  static const std::set<std::string> kCommon = {
      "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed",
      "user", "presence_penalty", "frequency_penalty", "logit_bias", "top_k", "min_p", "ignore_eos",
      "return_token_ids", "session_id", "logprobs"};
  static const std::set<std::string> kChat = {"messages", "max_completion_tokens", "top_logprobs", "tools",
                                              "tool_choice", "parallel_tool_calls", "response_format"};
  static const std::set<std::string> kCompletion = {"prompt", "echo", "suffix", "best_of"};
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (kCommon.count(it.key()) || (chat ? kChat : kCompletion).count(it.key())) continue;
    return Bad(it.key(), absl::StrCat("not supported by this endpoint (", chat ? "/v1/chat/completions" : "/v1/completions", ")"));
  }
  const auto present = [&](const char* key) { return body.contains(key) && !body[key].is_null(); };
  Call c;
  c.chat = chat;
  SamplingParams& p = c.params;
  p.max_new_tokens = options_.default_max_tokens;
  try {
    if (present("model") && body["model"].get<std::string>() != options_.model_name) {
      return Bad("model", absl::StrCat("unknown model '", body["model"].get<std::string>(),
                                       "'; this endpoint serves '", options_.model_name, "'"));
    }
    if (chat && present("max_completion_tokens")) {
      p.max_new_tokens = body["max_completion_tokens"].get<int64_t>();
    } else if (present("max_tokens")) {
      p.max_new_tokens = body["max_tokens"].get<int64_t>();
    }
    if (present("temperature")) p.temperature = body["temperature"].get<double>();
    if (present("top_p")) p.top_p = body["top_p"].get<double>();
    if (present("top_k")) p.top_k = body["top_k"].get<int32_t>();
    if (present("min_p")) p.min_p = body["min_p"].get<double>();
    if (present("ignore_eos")) p.ignore_eos = body["ignore_eos"].get<bool>();
    if (present("stop")) {
      if (body["stop"].is_string()) {
        c.stops.push_back(body["stop"].get<std::string>());
      } else {
        c.stops = body["stop"].get<std::vector<std::string>>();
      }
      for (const std::string& s : c.stops) {
        if (s.empty()) return Bad("stop", "empty stop strings are not allowed");
      }
    }
    if (present("seed")) c.seed = body["seed"].get<uint64_t>();
    if (present("n")) c.n = body["n"].get<int>();
    if (c.n < 1 || c.n > 128) return Bad("n", absl::StrCat("must be in [1, 128], got ", c.n));
    if (present("stream")) c.stream = body["stream"].get<bool>();
    if (present("stream_options")) {
      if (!c.stream) return Bad("stream_options", "only allowed with stream: true");
      for (auto it = body["stream_options"].begin(); it != body["stream_options"].end(); ++it) {
        if (it.key() != "include_usage") return Bad("stream_options." + it.key(), "not supported");
      }
      c.include_usage = body["stream_options"].value("include_usage", false);
    }
    for (const char* penalty : {"presence_penalty", "frequency_penalty"}) {
      if (present(penalty) && body[penalty].get<double>() != 0.0) return Bad(penalty, "only 0 is supported");
    }
    if (present("logit_bias") && !body["logit_bias"].empty()) return Bad("logit_bias", "not supported");
    c.token_ids = present("return_token_ids") && body["return_token_ids"].get<bool>();
    if (present("session_id")) {
      c.session = body["session_id"].get<std::string>();
    } else {
      c.session = session_header;
    }
    if (!c.session.empty() && c.n > 1) {
      return Bad("n", "a session records one trajectory per call; use n = 1 (one session per attempt)");
    }

    if (chat) {
      if (!body.contains("messages") || !body["messages"].is_array()) return Bad("messages", "required, a list");
      if (present("logprobs")) c.logprobs = body["logprobs"].get<bool>();
      if (present("top_logprobs")) {
        if (!c.logprobs) return Bad("top_logprobs", "requires logprobs: true");
        p.top_logprobs = body["top_logprobs"].get<int32_t>();
      }
      if (present("response_format") && body["response_format"].value("type", "") != "text") {
        return Bad("response_format", "only {\"type\": \"text\"} is supported (no structured output)");
      }
      ChatTemplateOptions options;
      if (present("tools")) {
        // Key order matters: the template prints each tool as tojson does.
        nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(raw)["tools"];
        if (!ordered.is_array()) return Bad("tools", "must be a list");
        for (size_t i = 0; i < ordered.size(); ++i) {
          const auto& t = ordered[i];
          if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") ||
              !t["function"].is_object() || !t["function"].contains("name")) {
            return Bad(absl::StrCat("tools[", i, "]"), "expected {\"type\": \"function\", \"function\": {\"name\": ...}}");
          }
          options.tools.push_back(TemplateToJson(t));
        }
      }
      std::string tool_choice = "auto";
      if (present("tool_choice")) {
        if (!body["tool_choice"].is_string() ||
            (body["tool_choice"] != "auto" && body["tool_choice"] != "none")) {
          return Bad("tool_choice", "only \"auto\" and \"none\" are supported (no forced calls)");
        }
        tool_choice = body["tool_choice"].get<std::string>();
      }
      c.tools = !options.tools.empty() && tool_choice == "auto";
      std::vector<ChatMessage> messages;
      for (size_t i = 0; i < body["messages"].size(); ++i) {
        const json& m = body["messages"][i];
        const std::string where = absl::StrCat("messages[", i, "]");
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
          return Bad(where, "needs a string \"role\"");
        }
        ChatMessage cm;
        cm.role = m["role"].get<std::string>();
        if (m.contains("content") && m["content"].is_string()) {
          cm.content = m["content"].get<std::string>();
        } else if (m.contains("content") && m["content"].is_array()) {
          for (const auto& part : m["content"]) {  // [{"type":"text","text":...}]
            if (!part.is_object() || part.value("type", "") != "text") {
              return Bad(where + ".content", "only text parts are supported");
            }
            cm.content += part.value("text", "");
          }
        } else if (m.contains("content") && !m["content"].is_null()) {
          return Bad(where + ".content", "must be a string, a list of text parts or null");
        }
        if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) {
          cm.reasoning_content = m["reasoning_content"].get<std::string>();
        }
        if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
          for (const auto& tc : m["tool_calls"]) {
            const json& f = tc.contains("function") ? tc["function"] : tc;
            if (!f.is_object() || !f.contains("name") || !f["name"].is_string()) {
              return Bad(where + ".tool_calls", "each call needs function.name");
            }
            const json args = f.value("arguments", json("{}"));
            cm.tool_calls.push_back({f["name"].get<std::string>(),
                                     args.is_string() ? args.get<std::string>() : args.dump()});
          }
        }
        messages.push_back(std::move(cm));
      }
      auto text = RenderQwenChat(messages, options);
      if (!text.ok()) return Bad("messages", std::string(text.status().message()));
      c.prompt = tokenizer_->Encode(*text);
    } else {
      if (!body.contains("prompt")) return Bad("prompt", "required");
      const json& prompt = body["prompt"];
      if (prompt.is_string()) {
        c.prompt = tokenizer_->Encode(prompt.get<std::string>());
      } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
        c.prompt = prompt.get<std::vector<int32_t>>();  // token ids: no tokenisation at all
      } else if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
        c.prompt = tokenizer_->Encode(prompt[0].get<std::string>());
      } else {
        return Bad("prompt", "a string, a list of token ids, or a list of one string");
      }
      if (present("echo") && body["echo"].get<bool>()) return Bad("echo", "not supported");
      if (present("suffix") && !body["suffix"].get<std::string>().empty()) return Bad("suffix", "not supported");
      if (present("best_of") && body["best_of"].get<int>() != 1) return Bad("best_of", "only 1 is supported");
      if (present("logprobs")) {
        c.logprobs = true;
        p.top_logprobs = body["logprobs"].get<int32_t>();
      }
    }
  } catch (const json::exception& e) {
    return Bad("request", absl::StrCat("a field has the wrong type: ", e.what()));
  }
  if (c.prompt.empty()) return Bad(chat ? "messages" : "prompt", "encodes to no tokens");
  // The tokenizer's end-of-turn tokens end generation like the model's eos (unless ignore_eos).
  if (!p.ignore_eos) {
    for (TokenId id : tokenizer_->Specials().stop) p.stop_token_ids.push_back(id);
  }
  if (absl::Status v = p.Validate(); !v.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("request: ", v.message()));
  }
  return c;
}

json OpenAIServer::Choice(const Call& call, size_t index, const RequestOutput& out) const {
  std::string text = tokenizer_->Decode(out.tokens, true);
  std::string finish(FinishReasonName(out.finish_reason));
  if (auto [at, len] = FindStop(text, call.stops); at != std::string::npos) {
    text.resize(at);  // OpenAI returns the text before the stop sequence
    finish = "stop";
  }
  const auto token_text = [&](int32_t id) { return tokenizer_->Decode(std::span<const int32_t>(&id, 1)); };
  json choice = {{"index", index}, {"finish_reason", finish}, {"logprobs", nullptr}};
  const Pending* pending = call.pending[index].get();  // done: its fields are no longer written
  if (call.chat) {
    json message = {{"role", "assistant"}, {"content", text}};
    if (call.tools) {
      ParsedToolCalls parsed = ParseQwenToolCalls(text);
      if (!parsed.calls.empty()) {
        json calls = json::array();
        for (size_t k = 0; k < parsed.calls.size(); ++k) {
          calls.push_back({{"id", absl::StrCat("call_", out.id, "_", k)},
                           {"type", "function"},
                           {"function", {{"name", parsed.calls[k].name}, {"arguments", parsed.calls[k].arguments}}}});
        }
        message["content"] = parsed.content.empty() ? json(nullptr) : json(parsed.content);
        message["tool_calls"] = calls;
        choice["finish_reason"] = "tool_calls";
      }
    }
    choice["message"] = message;
    if (call.logprobs) {
      json content = json::array();
      for (size_t i = 0; i < out.tokens.size(); ++i) {
        const std::string tok = token_text(out.tokens[i]);
        json top = json::array();
        if (i < pending->top.size()) {
          for (const TopLogprob& t : pending->top[i]) {
            const std::string s = token_text(t.token);
            top.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", Bytes(s)}});
          }
        }
        content.push_back({{"token", tok}, {"logprob", out.logprobs[i]}, {"bytes", Bytes(tok)},
                           {"top_logprobs", top}});
      }
      choice["logprobs"] = {{"content", content}};
    }
  } else {
    choice["text"] = text;
    if (call.logprobs) {
      json tokens = json::array(), lps = json::array(), tops = json::array();
      for (size_t i = 0; i < out.tokens.size(); ++i) {
        tokens.push_back(token_text(out.tokens[i]));
        lps.push_back(out.logprobs[i]);
        json top = json::object();
        if (i < pending->top.size()) {
          for (const TopLogprob& t : pending->top[i]) top[token_text(t.token)] = t.logprob;
        }
        tops.push_back(top);
      }
      choice["logprobs"] = {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops},
                            {"token_ids", out.tokens}};
    }
  }
  // vLLM's extension: the exact prompt and completion ids, so that an agent can continue the
  // conversation token-exactly (a next call with a token-id prompt).
  if (call.token_ids) {
    choice["prompt_token_ids"] = out.prompt;
    choice["token_ids"] = out.tokens;
  }
  return choice;
}

void OpenAIServer::Handle(bool chat, const std::string& raw, const std::string& session_header,
                          httplib::Response& res) {
  int status = 500;
  std::string reply;
  absl::StatusOr<Call> parsed = ParseCall(chat, raw, session_header);
  if (!parsed.ok()) {
    Error(400, std::string(parsed.status().message()), &status, &reply);
    res.status = status;
    res.set_content(reply, "application/json");
    return;
  }
  auto call = std::make_shared<Call>(std::move(*parsed));
  int64_t first = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = next_id_;
    next_id_ += call->n;
  }
  call->id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", first);
  call->created = static_cast<int64_t>(std::time(nullptr));
  for (int i = 0; i < call->n; ++i) {
    Request req;
    req.id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", first + i);
    req.prompt = call->prompt;
    req.params = call->params;
    if (call->seed) req.seed = *call->seed + static_cast<uint64_t>(i);
    call->pending.push_back(Submit(std::move(req), call->stops));
  }
  if (call->stream) return Stream(call, res);

  json choices = json::array();
  int64_t completion_tokens = 0;
  for (size_t i = 0; i < call->pending.size(); ++i) {
    Wait(call->pending[i]);
    const absl::StatusOr<RequestOutput>& out = call->pending[i]->result;
    if (!out.ok()) {
      Error(absl::IsInvalidArgument(out.status()) ? 400 : 500, std::string(out.status().message()),
            &status, &reply);
      res.status = status;
      res.set_content(reply, "application/json");
      return;
    }
    Record(call->session, *out);
    completion_tokens += std::ssize(out->tokens);
    choices.push_back(Choice(*call, i, *out));
  }
  const int64_t prompt_tokens = std::ssize(call->prompt);
  json resp = {{"id", call->id},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", call->created},
               {"model", options_.model_name},
               {"choices", choices},
               {"usage", {{"prompt_tokens", prompt_tokens},
                          {"completion_tokens", completion_tokens},
                          {"total_tokens", prompt_tokens + completion_tokens}}}};
  if (!call->session.empty()) resp["session_id"] = call->session;
  res.status = 200;
  res.set_content(resp.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// Server-sent events: one chunk per choice per engine step that produced text, then each
// choice's finish chunk, the usage chunk (stream_options.include_usage) and "data: [DONE]".
// Text that may still turn into a stop string, and an unfinished UTF-8 character, wait for the
// next token. With tools, a choice's text is sent whole at its end (tool calls are parsed from
// the complete output). A client that disconnects aborts its calls in the engine.
void OpenAIServer::Stream(std::shared_ptr<Call> call, httplib::Response& res) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream", [this, call](size_t, httplib::DataSink& sink) {
    const size_t n = call->pending.size();
    std::vector<size_t> seen(n, 0), sent_bytes(n, 0);
    std::vector<bool> finished(n, false);
    const char* object = call->chat ? "chat.completion.chunk" : "text_completion";
    const auto chunk = [&](json choices) {
      json c = {{"id", call->id}, {"object", object}, {"created", call->created},
                {"model", options_.model_name}, {"choices", std::move(choices)}};
      if (!call->session.empty()) c["session_id"] = call->session;
      return c;
    };
    const auto send = [&](const json& event) {
      const std::string data = "data: " + event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
      return sink.write(data.data(), data.size());
    };
    const auto token_text = [&](int32_t id) { return tokenizer_->Decode(std::span<const int32_t>(&id, 1)); };
    // A delta of choice i: text plus the logprobs of tokens [from, to).
    const auto delta = [&](size_t i, const std::string& text, const std::vector<float>& lps,
                           const std::vector<int32_t>& toks, const std::vector<std::vector<TopLogprob>>& top,
                           size_t from, size_t to) {
      json choice = {{"index", i}, {"finish_reason", nullptr}, {"logprobs", nullptr}};
      if (call->chat) {
        choice["delta"] = {{"content", text}};
        if (call->logprobs) {
          json content = json::array();
          for (size_t k = from; k < to; ++k) {
            const std::string t = token_text(toks[k]);
            json alternatives = json::array();
            if (k < top.size()) {
              for (const TopLogprob& a : top[k]) {
                const std::string s = token_text(a.token);
                alternatives.push_back({{"token", s}, {"logprob", a.logprob}, {"bytes", Bytes(s)}});
              }
            }
            content.push_back({{"token", t}, {"logprob", lps[k]}, {"bytes", Bytes(t)}, {"top_logprobs", alternatives}});
          }
          choice["logprobs"] = {{"content", content}};
        }
      } else {
        choice["text"] = text;
      }
      return choice;
    };
    if (call->chat) {
      json first = json::array();
      for (size_t i = 0; i < n; ++i) {
        first.push_back({{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                         {"logprobs", nullptr}, {"finish_reason", nullptr}});
      }
      if (!send(chunk(first))) {
        Cancel(call->pending);
        return false;
      }
    }
    int64_t completion_tokens = 0;
    size_t left = n;
    while (left > 0) {
      // Snapshot progress under the lock; decode and send outside it.
      std::vector<std::vector<int32_t>> toks(n);
      std::vector<std::vector<float>> lps(n);
      std::vector<std::vector<std::vector<TopLogprob>>> tops(n);
      std::vector<bool> done(n);
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(200), [&] {
          for (size_t i = 0; i < n; ++i) {
            if (!finished[i] && (call->pending[i]->done || call->pending[i]->tokens.size() > seen[i])) return true;
          }
          return false;
        });
        for (size_t i = 0; i < n; ++i) {
          toks[i] = call->pending[i]->tokens;
          lps[i] = call->pending[i]->logprobs;
          tops[i] = call->pending[i]->top;
          done[i] = call->pending[i]->done;
        }
      }
      if (!sink.is_writable()) {
        Cancel(call->pending);
        return false;
      }
      for (size_t i = 0; i < n; ++i) {
        if (finished[i]) continue;
        Pending& p = *call->pending[i];
        if (done[i]) {
          finished[i] = true;
          --left;
          if (!p.result.ok()) {
            send(json{{"error", {{"message", std::string(p.result.status().message())}, {"type", "server_error"}}}});
            continue;
          }
          const RequestOutput& out = *p.result;
          Record(call->session, out);
          completion_tokens += std::ssize(out.tokens);
          json whole = Choice(*call, i, out);
          json last = {{"index", i}, {"finish_reason", whole["finish_reason"]}, {"logprobs", nullptr}};
          const std::string text = call->chat ? whole["message"]["content"].is_string()
                                                    ? whole["message"]["content"].get<std::string>() : ""
                                              : whole["text"].get<std::string>();
          const std::string rest = text.size() > sent_bytes[i] ? text.substr(sent_bytes[i]) : "";
          json tail = delta(i, rest, out.logprobs, out.tokens, p.top, std::min(seen[i], out.tokens.size()),
                            out.tokens.size());
          if (call->chat && whole["message"].contains("tool_calls")) {
            json calls = whole["message"]["tool_calls"];
            for (size_t k = 0; k < calls.size(); ++k) calls[k]["index"] = k;
            tail["delta"]["tool_calls"] = calls;
          }
          if (!rest.empty() || (tail.contains("delta") && tail["delta"].contains("tool_calls")) ||
              (call->logprobs && out.tokens.size() > seen[i])) {
            send(chunk(json::array({tail})));
          }
          if (call->chat) {
            last["delta"] = json::object();
          } else {
            last["text"] = "";
          }
          send(chunk(json::array({last})));
          continue;
        }
        if (toks[i].size() <= seen[i] || call->tools) continue;
        std::string text = tokenizer_->Decode(toks[i], true);
        if (auto [at, len] = FindStop(text, call->stops); at != std::string::npos) {
          text.resize(at);
        } else {
          text.resize(text.size() - HoldBack(text, call->stops));
        }
        std::string piece = text.size() > sent_bytes[i] ? text.substr(sent_bytes[i]) : "";
        if (!piece.empty() || call->logprobs) {
          if (!send(chunk(json::array({delta(i, piece, lps[i], toks[i], tops[i], seen[i], toks[i].size())})))) {
            Cancel(call->pending);
            return false;
          }
          sent_bytes[i] += piece.size();
          seen[i] = toks[i].size();
        }
      }
    }
    if (call->include_usage) {
      const int64_t prompt_tokens = std::ssize(call->prompt);
      json usage = chunk(json::array());
      usage["usage"] = {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
                        {"total_tokens", prompt_tokens + completion_tokens}};
      send(usage);
    }
    const std::string end = "data: [DONE]\n\n";
    sink.write(end.data(), end.size());
    sink.done();
    return true;
  });
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
  // Requests by path and status, in this worker's metrics (shipped to the controller's /metrics).
  static auto& requests = CounterFamily(ProcessRegistry(), "tidal_openai_requests_total",
                                        "Agent endpoint (OpenAI-compatible) requests by path and status");
  auto json_post = [this](const std::string& pattern, Handler handle) {
    // The reward route's pattern is a regex; its label names the session generically.
    const std::string path = pattern.find('(') == std::string::npos ? pattern : "/v1/sessions/{id}/reward";
    http_->Post(pattern, [handle = std::move(handle), path](const httplib::Request& req, httplib::Response& res) {
      int status = 500;
      std::string reply;
      handle(req, &status, &reply);
      requests.Add({{"path", path}, {"status", std::to_string(status)}}).Increment();
      res.status = status;
      res.set_content(reply, "application/json");
    });
  };
  http_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Handle(/*chat=*/true, req.body, req.get_header_value("X-Session-Id"), res);
  });
  http_->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Handle(/*chat=*/false, req.body, req.get_header_value("X-Session-Id"), res);
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
  const json model = {{"id", options_.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "tidal"}};
  http_->Get("/v1/models", [model](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(), "application/json");
  });
  http_->Get(R"(/v1/models/(.+))", [this, model](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] == options_.model_name) {
      res.set_content(model.dump(), "application/json");
      return;
    }
    int status = 404;
    std::string reply;
    Error(404, absl::StrCat("model '", std::string(req.matches[1]), "' does not exist; this endpoint serves '",
                            options_.model_name, "'"), &status, &reply);
    res.status = status;
    res.set_content(reply, "application/json");
  });
  http_->Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  RequireBearerToken(*http_, options_.bearer_token);
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
