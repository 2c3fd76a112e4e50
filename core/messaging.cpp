#include "core/messaging.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "absl/container/flat_hash_map.h"
#include "core/clock.h"
#include "core/curve_auth.h"
#include "core/heartbeat.h"
#include "core/logging.h"
#include "core/status.h"

namespace tidal {

// One context per process: its I/O threads serve every endpoint (and the ZAP handler of
// core/curve_auth.cpp). Leaked on purpose: terminating a context at static-destruction time blocks
// on sockets still lingering.
zmq::context_t& MessagingContext() {
  static auto* ctx = new zmq::context_t(1);
  return *ctx;
}

namespace {

using Clock = MonoClock;

// Frames at least this large are handed to ZeroMQ without a copy (the Payload owner stays alive
// until ZeroMQ has sent them); smaller ones are cheaper to copy than to reference-count.
constexpr size_t kZeroCopyThreshold = 4096;

void ReleasePayload(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

zmq::message_t ToZmq(const Payload& p) {
  if (p.size() < kZeroCopyThreshold || !p.owner()) return zmq::message_t(p.data(), p.size());
  auto* keep = new std::shared_ptr<const void>(p.owner());
  return zmq::message_t(const_cast<std::byte*>(p.data()), p.size(), &ReleasePayload, keep);
}

Payload FromZmq(zmq::message_t&& m) {
  auto owned = std::make_shared<zmq::message_t>(std::move(m));
  const void* data = owned->data();
  size_t size = owned->size();
  return Payload(std::shared_ptr<const void>(owned, data), data, size);
}

}  // namespace

namespace messaging_internal {

class Endpoint {
 public:
  enum class Kind { kRouter, kDealer };
  struct Config {
    Kind kind;
    std::string endpoint;
    std::string name;
    HeartbeatOptions heartbeat;
    int send_high_water_mark;
    absl::Duration linger;
    int64_t max_frame_bytes;
    prometheus::Registry* metrics;
    std::optional<CurveServerKeys> curve_server;  // router only
    std::optional<CurveClientKeys> curve_client;  // dealer only
    int64_t unadmitted_max_bytes = 0;  // router: cap on messages from peers not admitted; 0 = off
    bool allow_handover = true;        // router: ZMQ_ROUTER_HANDOVER
  };

  static absl::StatusOr<std::unique_ptr<Endpoint>> Start(Config config);
  ~Endpoint();

  const std::string& endpoint() const { return resolved_endpoint_; }
  const std::string& name() const { return config_.name; }

  absl::Status Enqueue(std::string_view peer, OutMessage out, uint64_t reply_to);
  std::future<absl::StatusOr<Envelope>> EnqueueRequest(std::string_view peer, OutMessage out,
                                                       absl::Duration timeout);
  absl::StatusOr<Inbound> Receive(absl::Duration timeout);
  absl::Status Post(OutMessage out);
  std::vector<std::string> AlivePeers() const;
  bool PeerAlive(std::string_view peer) const;
  void Admit(std::string_view peer, bool admitted);
  MessagingStats Stats() const;
  void Shutdown();

 private:
  struct Outgoing {
    std::string peer;  // routing identity (router only)
    uint64_t id = 0;
    std::vector<Payload> frames;
  };
  struct Pending {
    std::string peer;
    std::string type;
    Clock::time_point sent_at;
    Clock::time_point deadline;
    std::promise<absl::StatusOr<Envelope>> promise;
  };
  struct AtomicStats {
    std::atomic<uint64_t> sent{0}, received{0}, decode_errors{0}, send_errors{0}, late_replies{0},
        heartbeats_sent{0}, heartbeats_received{0}, peers_dead{0};
  };
  // Registry children for this endpoint; all null without options.metrics.
  struct Instruments {
    prometheus::Counter* sent = nullptr;
    prometheus::Counter* received = nullptr;
    prometheus::Counter* decode_errors = nullptr;
    prometheus::Counter* send_errors = nullptr;
    prometheus::Counter* late_replies = nullptr;
    prometheus::Counter* peers_dead = nullptr;
    prometheus::Gauge* peers_alive = nullptr;
    prometheus::Histogram* request_seconds = nullptr;
  };
  static void Bump(std::atomic<uint64_t>& stat, prometheus::Counter* counter) {
    stat.fetch_add(1, std::memory_order_relaxed);
    if (counter != nullptr) counter->Increment();
  }
  void SetAliveGauge();  // callers hold mu_

  Endpoint(Config config, zmq::socket_t socket, std::string resolved, int wake_fd);

  bool is_router() const { return config_.kind == Kind::kRouter; }
  // Name under which the heartbeat tracker and events know the remote side.
  std::string PeerKey(std::string_view identity) const {
    return is_router() ? std::string(identity) : std::string(Dealer::kRouterPeer);
  }
  std::vector<Payload> Encode(OutMessage out, uint64_t id, uint64_t reply_to) const;
  void Wake();

  // ---- I/O thread only ----
  void Run();
  void ReceiveAvailable(Clock::time_point now);
  void HandleMessage(std::vector<zmq::message_t>& parts, Clock::time_point now);
  // Returns false when the socket would block (the message stays queued).
  bool SendNow(const Outgoing& out);
  void FlushOutbox();
  void SendHeartbeat(const std::string& peer, uint64_t seq);
  void CheckLiveness(Clock::time_point now);
  void ExpireRequests(Clock::time_point now);
  void FailPending(uint64_t id, const absl::Status& status);
  void Deliver(Inbound item);

  const Config config_;
  const std::string resolved_endpoint_;
  zmq::socket_t socket_;  // owned by the I/O thread after construction
  const int wake_fd_;
  std::atomic<uint64_t> next_id_{1};
  AtomicStats stats_;
  Instruments metrics_;

  // I/O thread state.
  HeartbeatTracker tracker_;
  std::deque<Outgoing> retry_;  // accepted but the socket would block
  uint64_t heartbeat_seq_ = 0;
  Clock::time_point next_heartbeat_;

  mutable std::mutex mu_;
  std::condition_variable inbox_cv_;
  bool stopping_ = false;
  std::deque<Outgoing> outbox_;
  std::deque<Inbound> inbox_;
  absl::flat_hash_map<uint64_t, Pending> pending_;
  std::set<std::string, std::less<>> alive_;  // mirror of tracker_ for callers' threads
  std::set<std::string, std::less<>> admitted_;  // router: peers past the unadmitted cap (mu_)
  Clock::time_point last_cap_warning_{};          // I/O thread: one WARN per second at most

  std::mutex join_mu_;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<Endpoint>> Endpoint::Start(Config config) {
  const bool router = config.kind == Kind::kRouter;
  if (config.endpoint.empty()) return absl::InvalidArgumentError("messaging: empty endpoint");
  if (!router && (config.name.empty() || config.name.size() > 255 || config.name[0] == '\0')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dealer name '", config.name, "': must be 1-255 bytes and not start with a NUL byte"));
  }
  if (config.heartbeat.interval <= absl::ZeroDuration() || config.heartbeat.miss < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("heartbeat: interval must be > 0 and miss >= 1, got interval=",
                     absl::FormatDuration(config.heartbeat.interval),
                     " miss=", config.heartbeat.miss));
  }
  if (router && !config.curve_server && !IsLoopbackEndpoint(config.endpoint)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "bind ", config.endpoint, ": a control socket on a non-loopback address needs CURVE keys"));
  }
  if (!router && !config.curve_client && !IsLoopbackEndpoint(config.endpoint)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "connect ", config.endpoint, ": a non-loopback controller needs CURVE credentials"));
  }
  std::string zap_domain;
  if (config.curve_server) {
    static std::atomic<int> next_domain{0};
    zap_domain = absl::StrCat("tidal-", next_domain.fetch_add(1));
    TIDAL_RETURN_IF_ERROR(AllowCurveClients(zap_domain, config.curve_server->client_keys));
  }
  std::string resolved;
  zmq::socket_t socket;
  try {
    socket = zmq::socket_t(MessagingContext(), router ? zmq::socket_type::router
                                                   : zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, static_cast<int>(absl::ToInt64Milliseconds(config.linger)));
    socket.set(zmq::sockopt::sndhwm, config.send_high_water_mark);
    socket.set(zmq::sockopt::rcvhwm, config.send_high_water_mark);
    socket.set(zmq::sockopt::maxmsgsize, config.max_frame_bytes);
    if (router) {
      // Fail sends to unknown identities instead of dropping them silently, and let a restarted
      // worker with the same name take over its old identity.
      socket.set(zmq::sockopt::router_mandatory, 1);
      socket.set(zmq::sockopt::router_handover, config.allow_handover ? 1 : 0);
      if (config.curve_server) {
        socket.set(zmq::sockopt::curve_server, 1);
        socket.set(zmq::sockopt::curve_secretkey, config.curve_server->secret_key);
        socket.set(zmq::sockopt::zap_domain, zap_domain);
      }
      socket.bind(config.endpoint);
      resolved = socket.get(zmq::sockopt::last_endpoint);
    } else {
      socket.set(zmq::sockopt::routing_id, config.name);
      socket.set(zmq::sockopt::reconnect_ivl, 100);
      socket.set(zmq::sockopt::reconnect_ivl_max, 2000);
      if (config.curve_client) {
        socket.set(zmq::sockopt::curve_serverkey, config.curve_client->server_key);
        socket.set(zmq::sockopt::curve_publickey, config.curve_client->public_key);
        socket.set(zmq::sockopt::curve_secretkey, config.curve_client->secret_key);
      }
      socket.connect(config.endpoint);
      resolved = config.endpoint;
    }
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat(router ? "bind " : "connect ", config.endpoint,
                                               ": ", e.what()));
  }
  int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) return absl::InternalError("messaging: eventfd() failed");
  auto ep = std::unique_ptr<Endpoint>(
      new Endpoint(std::move(config), std::move(socket), std::move(resolved), wake_fd));
  ep->thread_ = std::thread([raw = ep.get()] { raw->Run(); });
  return ep;
}

Endpoint::Endpoint(Config config, zmq::socket_t socket, std::string resolved, int wake_fd)
    : config_(std::move(config)),
      resolved_endpoint_(std::move(resolved)),
      socket_(std::move(socket)),
      wake_fd_(wake_fd),
      tracker_(config_.heartbeat.interval, config_.heartbeat.miss) {
  if (prometheus::Registry* r = config_.metrics) {
    const prometheus::Labels labels = {{"endpoint", config_.name}};
    auto counter = [&](const char* name, const char* help) { return &CounterFamily(*r, name, help).Add(labels); };
    metrics_.sent = counter("tidal_messages_sent_total", "Messages written to the socket.");
    metrics_.received = counter("tidal_messages_received_total", "Messages received and decoded.");
    metrics_.decode_errors =
        counter("tidal_message_decode_errors_total", "Received messages rejected as malformed.");
    metrics_.send_errors =
        counter("tidal_message_send_errors_total", "Messages the socket refused (peer gone).");
    metrics_.late_replies = counter("tidal_message_late_replies_total",
                                    "Replies that arrived after their request timed out.");
    metrics_.peers_dead =
        counter("tidal_peers_dead_total", "Peers declared dead after missed heartbeats.");
    metrics_.peers_alive =
        &GaugeFamily(*r, "tidal_peers_alive", "Peers currently alive.").Add(labels);
    metrics_.request_seconds =
        &HistogramFamily(*r, "tidal_request_duration_seconds", "Time from sending a request to receiving its reply.")
             .Add(labels, ExponentialBuckets(0.0001, 4, 10));
  }
  auto now = Clock::now();
  next_heartbeat_ = now;  // a Dealer announces itself at once
  if (!is_router()) {
    // Watch the Router from connect time, so one that never answers is still reported dead.
    tracker_.Expect(Dealer::kRouterPeer, now);
    alive_.insert(std::string(Dealer::kRouterPeer));
  }
  SetAliveGauge();
}

void Endpoint::SetAliveGauge() {
  if (metrics_.peers_alive != nullptr) metrics_.peers_alive->Set(static_cast<double>(alive_.size()));
}

Endpoint::~Endpoint() {
  Shutdown();
  ::close(wake_fd_);
}

void Endpoint::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  Wake();
  inbox_cv_.notify_all();
  std::lock_guard<std::mutex> lock(join_mu_);  // several threads may shut down at once
  if (thread_.joinable()) thread_.join();
}

void Endpoint::Wake() {
  uint64_t one = 1;
  // EAGAIN only when the counter is saturated, which still leaves the fd readable.
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

std::vector<Payload> Endpoint::Encode(OutMessage out, uint64_t id, uint64_t reply_to) const {
  MessageHeader header;
  header.id = id;
  header.reply_to = reply_to;
  header.sender = config_.name;
  return EncodeFrames(std::move(header), out);
}

absl::Status Endpoint::Enqueue(std::string_view peer, OutMessage out, uint64_t reply_to) {
  uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  // Encoding happens on the caller's thread, keeping the I/O thread free for the socket.
  std::vector<Payload> frames = Encode(std::move(out), id, reply_to);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::CancelledError("messaging: endpoint is shutting down");
    if (is_router() && !alive_.contains(peer)) {
      return absl::NotFoundError(absl::StrCat("peer '", std::string(peer), "' is not connected to ",
                                              config_.name, " (never seen or declared dead)"));
    }
    outbox_.push_back(Outgoing{std::string(peer), id, std::move(frames)});
  }
  Wake();
  return absl::OkStatus();
}

std::future<absl::StatusOr<Envelope>> Endpoint::EnqueueRequest(std::string_view peer,
                                                               OutMessage out,
                                                               absl::Duration timeout) {
  uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  std::string type = out.type;
  std::vector<Payload> frames = Encode(std::move(out), id, 0);
  std::promise<absl::StatusOr<Envelope>> promise;
  auto future = promise.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      promise.set_value(absl::CancelledError("messaging: endpoint is shutting down"));
      return future;
    }
    if (is_router() && !alive_.contains(peer)) {
      promise.set_value(absl::NotFoundError(absl::StrCat(
          "request ", type, ": peer '", std::string(peer), "' is not connected (never seen or declared dead)")));
      return future;
    }
    auto now = Clock::now();
    auto deadline = now + std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(
                              std::max(timeout, absl::ZeroDuration())));
    pending_.emplace(id, Pending{std::string(peer), type, now, deadline, std::move(promise)});
    outbox_.push_back(Outgoing{std::string(peer), id, std::move(frames)});
  }
  Wake();
  return future;
}

absl::StatusOr<Inbound> Endpoint::Receive(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  auto ready = [&] { return stopping_ || !inbox_.empty(); };
  if (!ready()) {
    if (timeout == absl::InfiniteDuration()) {
      inbox_cv_.wait(lock, ready);
    } else {
      inbox_cv_.wait_for(lock, absl::ToChronoNanoseconds(std::max(timeout, absl::ZeroDuration())),
                         ready);
    }
  }
  if (stopping_) return absl::CancelledError("messaging: endpoint is shutting down");
  if (inbox_.empty()) {
    return absl::DeadlineExceededError(absl::StrCat(config_.name, ": nothing received within ",
                                                    absl::FormatDuration(timeout)));
  }
  Inbound item = std::move(inbox_.front());
  inbox_.pop_front();
  return item;
}

absl::Status Endpoint::Post(OutMessage out) {
  Envelope env;
  env.header.type = std::move(out.type);
  env.header.id = next_id_.fetch_add(1, std::memory_order_relaxed);
  env.header.sender = config_.name;
  env.header.frames = static_cast<uint32_t>(out.frames.size());
  env.body = std::move(out.body);
  env.frames = std::move(out.frames);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::CancelledError("messaging: endpoint is shutting down");
    inbox_.push_back(std::move(env));
  }
  inbox_cv_.notify_one();
  return absl::OkStatus();
}

std::vector<std::string> Endpoint::AlivePeers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {alive_.begin(), alive_.end()};
}

bool Endpoint::PeerAlive(std::string_view peer) const {
  std::lock_guard<std::mutex> lock(mu_);
  return alive_.contains(peer);
}

void Endpoint::Admit(std::string_view peer, bool admitted) {
  std::lock_guard<std::mutex> lock(mu_);
  if (admitted) {
    admitted_.emplace(peer);
  } else if (auto it = admitted_.find(peer); it != admitted_.end()) {
    admitted_.erase(it);
  }
}

MessagingStats Endpoint::Stats() const {
  MessagingStats s;
  s.sent = stats_.sent.load();
  s.received = stats_.received.load();
  s.decode_errors = stats_.decode_errors.load();
  s.send_errors = stats_.send_errors.load();
  s.late_replies = stats_.late_replies.load();
  s.heartbeats_sent = stats_.heartbeats_sent.load();
  s.heartbeats_received = stats_.heartbeats_received.load();
  s.peers_dead = stats_.peers_dead.load();
  return s;
}

// ---- I/O thread ----------------------------------------------------------------------------

void Endpoint::Run() {
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(config_.heartbeat.interval));
  for (;;) {
    auto now = Clock::now();
    auto next = tracker_.NextDeadline();
    if (!is_router()) next = std::min(next, next_heartbeat_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
      for (const auto& [id, p] : pending_) next = std::min(next, p.deadline);
    }
    // Capped so a socket that would block is retried soon; otherwise sleep until the next timer.
    auto cap = retry_.empty() ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(2);
    auto wait = next <= now ? Clock::duration::zero() : std::min<Clock::duration>(next - now, cap);
    auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(wait);

    zmq::pollitem_t items[] = {
        {socket_.handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, wake_fd_, ZMQ_POLLIN, 0},
    };
    try {
      zmq::poll(items, 2, wait_ms);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) TIDAL_LOG(ERROR) << "messaging: poll failed: " << e.what();
    }
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t count;
      [[maybe_unused]] ssize_t n = ::read(wake_fd_, &count, sizeof(count));
    }
    now = Clock::now();
    ReceiveAvailable(now);
    FlushOutbox();
    if (!is_router() && now >= next_heartbeat_) {
      SendHeartbeat("", ++heartbeat_seq_);
      next_heartbeat_ = std::max(next_heartbeat_ + interval, now);
    }
    CheckLiveness(now);
    ExpireRequests(now);
  }

  // Shutting down: give queued messages to ZeroMQ (linger sends them), fail what still waits.
  FlushOutbox();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, p] : pending_) {
    p.promise.set_value(absl::CancelledError(
        absl::StrCat("request ", p.type, " to '", p.peer, "': endpoint shut down")));
  }
  pending_.clear();
  socket_.close();
}

void Endpoint::ReceiveAvailable(Clock::time_point now) {
  // Bounded so a flooding peer cannot starve sends and timers.
  for (int i = 0; i < 1024; ++i) {
    std::vector<zmq::message_t> parts;
    std::optional<size_t> got;
    try {
      got = zmq::recv_multipart(socket_, std::back_inserter(parts), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      TIDAL_LOG(ERROR) << "messaging: receive failed on " << resolved_endpoint_ << ": " << e.what();
      return;
    }
    if (!got) return;
    HandleMessage(parts, now);
  }
}

void Endpoint::HandleMessage(std::vector<zmq::message_t>& parts, Clock::time_point now) {
  std::string identity;
  size_t first = 0;
  if (is_router()) {
    if (parts.empty()) return;
    identity = parts[0].to_string();
    first = 1;
  }
  if (config_.unadmitted_max_bytes > 0 && is_router()) {
    size_t bytes = 0;
    for (const zmq::message_t& m : parts) bytes += m.size();
    bool admitted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      admitted = admitted_.contains(identity);
    }
    // Checked before decoding: a peer that has not proven itself gets no MessagePack parse of a
    // large body (and nothing it sends is delivered beyond its small first messages).
    if (!admitted && bytes > static_cast<size_t>(config_.unadmitted_max_bytes)) {
      Bump(stats_.decode_errors, metrics_.decode_errors);
      if (now - last_cap_warning_ > std::chrono::seconds(1)) {
        last_cap_warning_ = now;
        TIDAL_LOG(WARN) << config_.name << ": dropped a " << bytes << "-byte message from unadmitted peer '"
                        << identity << "' (limit " << config_.unadmitted_max_bytes
                        << " bytes until the peer is admitted)";
      }
      return;
    }
  }
  std::vector<Payload> frames;
  frames.reserve(parts.size() - first);
  for (size_t i = first; i < parts.size(); ++i) frames.push_back(FromZmq(std::move(parts[i])));

  absl::StatusOr<Envelope> env = DecodeFrames(std::move(frames));
  if (!env.ok()) {
    Bump(stats_.decode_errors, metrics_.decode_errors);
    TIDAL_LOG(WARN) << config_.name << ": rejected a message from '"
                    << (is_router() ? identity : std::string(Dealer::kRouterPeer))
                    << "': " << env.status().message();
    return;
  }
  Bump(stats_.received, metrics_.received);
  env->peer = is_router() ? identity : env->header.sender;

  std::string key = PeerKey(identity);
  if (tracker_.Seen(key, now)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      alive_.insert(key);
      SetAliveGauge();
    }
    TIDAL_LOG(INFO) << config_.name << ": peer '" << key << "' joined";
    Deliver(PeerEvent{PeerEvent::Kind::kJoined, key});
  }

  if (env->Is<Heartbeat>()) {
    stats_.heartbeats_received.fetch_add(1, std::memory_order_relaxed);
    if (is_router()) {
      auto hb = env->As<Heartbeat>();
      SendHeartbeat(identity, hb.ok() ? hb->seq : 0);  // the echo is the Dealer's liveness signal
    }
    return;
  }

  if (env->header.reply_to != 0) {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = pending_.find(env->header.reply_to);
    if (it == pending_.end() || (is_router() && it->second.peer != identity)) {
      lock.unlock();
      Bump(stats_.late_replies, metrics_.late_replies);
      TIDAL_LOG(DEBUG) << config_.name << ": dropped reply " << env->type() << " from '" << key
                       << "' to request " << env->header.reply_to << " (timed out or unknown)";
      return;
    }
    Pending p = std::move(it->second);
    pending_.erase(it);
    lock.unlock();
    if (metrics_.request_seconds != nullptr) {
      metrics_.request_seconds->Observe(std::chrono::duration<double>(now - p.sent_at).count());
    }
    if (env->Is<Error>()) {
      auto err = env->As<Error>();
      p.promise.set_value(err.ok() ? StatusFromError(*err) : err.status());
    } else {
      p.promise.set_value(*std::move(env));
    }
    return;
  }
  Deliver(*std::move(env));
}

void Endpoint::Deliver(Inbound item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.push_back(std::move(item));
  }
  inbox_cv_.notify_one();
}

bool Endpoint::SendNow(const Outgoing& out) {
  try {
    if (is_router()) {
      if (!socket_.send(zmq::buffer(out.peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        return false;  // would block: nothing sent yet, retry later
      }
    }
    for (size_t i = 0; i < out.frames.size(); ++i) {
      auto flags = i + 1 < out.frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      // After the first part is accepted the rest of a multipart message cannot block.
      if (!socket_.send(ToZmq(out.frames[i]), flags | zmq::send_flags::dontwait)) {
        if (i == 0 && !is_router()) return false;
      }
    }
    Bump(stats_.sent, metrics_.sent);
  } catch (const zmq::error_t& e) {
    Bump(stats_.send_errors, metrics_.send_errors);
    std::string why = absl::StrCat("send to '", PeerKey(out.peer), "' failed: ", e.what());
    TIDAL_LOG(WARN) << config_.name << ": " << why;
    FailPending(out.id, absl::UnavailableError(why));
  }
  return true;
}

void Endpoint::FlushOutbox() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!outbox_.empty()) {
      retry_.push_back(std::move(outbox_.front()));
      outbox_.pop_front();
    }
  }
  while (!retry_.empty()) {
    if (!SendNow(retry_.front())) return;
    retry_.pop_front();
  }
}

void Endpoint::SendHeartbeat(const std::string& peer, uint64_t seq) {
  Outgoing out;
  out.peer = peer;
  out.id = next_id_.fetch_add(1, std::memory_order_relaxed);
  out.frames = Encode(MakeOut(Heartbeat{seq, WallMillis()}), out.id, 0);
  // A heartbeat that would block is dropped: the next one follows within an interval.
  if (SendNow(out)) stats_.heartbeats_sent.fetch_add(1, std::memory_order_relaxed);
}

void Endpoint::CheckLiveness(Clock::time_point now) {
  for (const std::string& peer : tracker_.Expire(now)) {
    Bump(stats_.peers_dead, metrics_.peers_dead);
    TIDAL_LOG(WARN) << config_.name << ": peer '" << peer << "' is dead (silent for more than "
                    << config_.heartbeat.miss << " heartbeat intervals of "
                    << absl::FormatDuration(config_.heartbeat.interval) << ")";
    std::vector<Pending> failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      alive_.erase(peer);
      admitted_.erase(peer);  // a peer back from the dead proves itself again
      SetAliveGauge();
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (PeerKey(it->second.peer) == peer) {
          failed.push_back(std::move(it->second));
          pending_.erase(it++);
        } else {
          ++it;
        }
      }
    }
    for (Pending& p : failed) {
      p.promise.set_value(absl::UnavailableError(
          absl::StrCat("request ", p.type, ": peer '", peer, "' died before answering")));
    }
    Deliver(PeerEvent{PeerEvent::Kind::kDead, peer});
  }
}

void Endpoint::ExpireRequests(Clock::time_point now) {
  std::vector<Pending> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second));
        pending_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  for (Pending& p : expired) {
    p.promise.set_value(absl::DeadlineExceededError(absl::StrCat(
        "request ", p.type, " to '", PeerKey(p.peer), "': no reply within the timeout")));
  }
}

void Endpoint::FailPending(uint64_t id, const absl::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  lock.unlock();
  p.promise.set_value(status);
}

}  // namespace messaging_internal

// ---- Router / Dealer facades ---------------------------------------------------------------

using messaging_internal::Endpoint;

namespace messaging_internal {
EndpointHandle::EndpointHandle(std::unique_ptr<Endpoint> impl) : impl_(std::move(impl)) {}
EndpointHandle::~EndpointHandle() = default;
const std::string& EndpointHandle::endpoint() const { return impl_->endpoint(); }
const std::string& EndpointHandle::name() const { return impl_->name(); }
absl::StatusOr<Inbound> EndpointHandle::Receive(absl::Duration timeout) { return impl_->Receive(timeout); }
absl::Status EndpointHandle::PostOut(OutMessage out) { return impl_->Post(std::move(out)); }
MessagingStats EndpointHandle::stats() const { return impl_->Stats(); }
void EndpointHandle::Shutdown() { impl_->Shutdown(); }
}  // namespace messaging_internal

absl::StatusOr<std::unique_ptr<Router>> Router::Bind(RouterOptions options) {
  TIDAL_ASSIGN_OR_RETURN(
      auto impl, Endpoint::Start({Endpoint::Kind::kRouter, options.endpoint, options.name,
                                  options.heartbeat, options.send_high_water_mark, options.linger,
                                  options.max_frame_bytes, options.metrics, options.curve, std::nullopt,
                                  options.unadmitted_max_bytes, options.allow_handover}));
  return std::unique_ptr<Router>(new Router(std::move(impl)));
}
Router::Router(std::unique_ptr<Endpoint> impl) : TypedVerbs(std::move(impl)) {}
absl::Status Router::SendOut(std::string_view peer, OutMessage out) {
  return impl_->Enqueue(peer, std::move(out), 0);
}
absl::Status Router::ReplyOut(const Envelope& request, OutMessage out) {
  return impl_->Enqueue(request.peer, std::move(out), request.header.id);
}
std::future<absl::StatusOr<Envelope>> Router::RequestOut(std::string_view peer, OutMessage out,
                                                         absl::Duration timeout) {
  return impl_->EnqueueRequest(peer, std::move(out), timeout);
}
std::vector<std::string> Router::Peers() const { return impl_->AlivePeers(); }
void Router::Admit(std::string_view peer) { impl_->Admit(peer, true); }
void Router::Revoke(std::string_view peer) { impl_->Admit(peer, false); }

absl::StatusOr<std::unique_ptr<Dealer>> Dealer::Connect(DealerOptions options) {
  TIDAL_ASSIGN_OR_RETURN(
      auto impl, Endpoint::Start({Endpoint::Kind::kDealer, options.endpoint, options.name,
                                  options.heartbeat, options.send_high_water_mark, options.linger,
                                  options.max_frame_bytes, options.metrics, std::nullopt, options.curve}));
  return std::unique_ptr<Dealer>(new Dealer(std::move(impl)));
}
Dealer::Dealer(std::unique_ptr<Endpoint> impl) : TypedVerbs(std::move(impl)) {}
absl::Status Dealer::SendOut(OutMessage out) { return impl_->Enqueue("", std::move(out), 0); }
absl::Status Dealer::ReplyOut(const Envelope& request, OutMessage out) {
  return impl_->Enqueue("", std::move(out), request.header.id);
}
std::future<absl::StatusOr<Envelope>> Dealer::RequestOut(OutMessage out, absl::Duration timeout) {
  return impl_->EnqueueRequest("", std::move(out), timeout);
}
bool Dealer::RouterAlive() const { return impl_->PeerAlive(kRouterPeer); }

}  // namespace tidal
