#include "envs/sandbox_server.h"

#include "core/httplib.h"

namespace tidal::envs {

using nlohmann::json;

SandboxServer::SandboxServer(SandboxServerOptions options)
    : options_(std::move(options)), busy_(std::max(1, options_.workers), false) {}

SandboxServer::~SandboxServer() { Stop(); }

int SandboxServer::AcquireSlot() {
  std::unique_lock<std::mutex> lock(mu_);
  auto free_slot = [&] {
    for (size_t i = 0; i < busy_.size(); ++i) {
      if (!busy_[i]) return static_cast<int>(i);
    }
    return -1;
  };
  int slot = free_slot();
  if (slot < 0) {
    if (queued_ >= options_.queue_limit) return -1;
    ++queued_;
    cv_.wait(lock, [&] { return stopped_ || free_slot() >= 0; });
    --queued_;
    if (stopped_) return -1;
    slot = free_slot();
  }
  busy_[slot] = true;
  return slot;
}

void SandboxServer::ReleaseSlot(int slot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    busy_[slot] = false;
  }
  cv_.notify_one();
}

void SandboxServer::HandleRun(const std::string& body, int* status, std::string* reply) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  auto req = SandboxRequestFromJson(j.is_discarded() ? json() : j);
  if (!req.ok()) {
    *status = 400;
    *reply = json{{"error", std::string(req.status().message())}}.dump();
    return;
  }
  const int slot = AcquireSlot();
  if (slot < 0) {
    *status = 503;
    *reply = json{{"error", "sandbox queue is full; retry later"}}.dump();
    return;
  }
  auto result = RunSandboxed(*req, options_.limits, slot);
  ReleaseSlot(slot);
  if (result.ok()) {
    *status = 200;
    // Program output may be any bytes: replace invalid UTF-8 rather than fail the reply.
    *reply = result->ToJson().dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  *status = absl::IsInvalidArgument(result.status())       ? 400
            : absl::IsFailedPrecondition(result.status()) ? 503
                                                          : 500;
  *reply = json{{"error", std::string(result.status().message())}}.dump();
}

absl::Status SandboxServer::Start() {
  http_ = std::make_unique<httplib::Server>();
  // Enough threads for every running and queued request, plus health checks.
  const size_t threads = busy_.size() + static_cast<size_t>(options_.queue_limit) + 2;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(16 << 20);
  http_->Post("/run", [this](const httplib::Request& req, httplib::Response& res) {
    int status = 500;
    std::string reply;
    HandleRun(req.body, &status, &reply);
    res.status = status;
    res.set_content(reply, "application/json");
  });
  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu_);
    int busy = 0;
    for (bool b : busy_) busy += b;
    res.set_content(json{{"ok", true},
                         {"workers", busy_.size()},
                         {"busy", busy},
                         {"queued", queued_}}
                        .dump(),
                    "application/json");
  });
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.bind.c_str());
    if (port_ <= 0) {
      return absl::UnavailableError(absl::StrCat("sandbox: cannot bind ", options_.bind));
    }
  } else {
    if (!http_->bind_to_port(options_.bind.c_str(), options_.port)) {
      return absl::UnavailableError(
          absl::StrCat("sandbox: cannot bind ", options_.bind, ":", options_.port));
    }
    port_ = options_.port;
  }
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return absl::OkStatus();
}

void SandboxServer::Wait() {
  if (thread_.joinable()) thread_.join();
}

void SandboxServer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tidal::envs
