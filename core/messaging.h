// Control/data-plane endpoints over ZeroMQ: the controller's Router (ROUTER socket, binds) and a
// worker's Dealer (DEALER socket, connects). Messages are typed structs (core/message.h).
//
// Threading contract:
// - Each endpoint owns one I/O thread, and only that thread touches its ZeroMQ socket (sockets are
//   not thread-safe). Every public method is thread-safe: Send/Reply/Request enqueue under a mutex
//   and wake the I/O thread through an eventfd it polls next to the socket; Receive waits on the
//   inbox the I/O thread fills. Any number of threads may send, request and receive at once.
// - Nothing user-supplied runs on the I/O thread (no callbacks), so a slow consumer cannot stall
//   heartbeats. Peer deaths and (re)joins arrive through Receive() as PeerEvent, in order with
//   the messages, so a single-threaded controller loop has one place to wait. Other threads of
//   the same process feed that loop with Post(): a local message (Envelope::peer empty) that goes
//   straight into the inbox without touching the socket.
// - Send() returns once the message is queued: OK means "accepted", not "delivered". Errors found
//   later on the I/O thread (e.g. the peer's connection vanished) are logged and counted; a
//   pending Request fails with them instead.
// - Shutdown() (idempotent, any thread; the destructor calls it) stops the I/O thread, fails
//   pending requests with Cancelled, makes blocked and later Receive() calls return Cancelled,
//   gives queued outgoing messages `linger` to leave, and closes the socket. To stop a thread
//   that loops on Receive(): Shutdown(), join that thread, then destroy the endpoint.
//
// Request/response: a request carries a fresh header id; the answer (sent with Reply) carries it
// as reply_to and is routed back to the waiting Request instead of the inbox. An Error reply
// becomes a non-OK status. Replies that come after their request timed out are dropped and
// counted (late_replies).
//
// Heartbeats: a Dealer sends Heartbeat every `interval`; the Router echoes each one. Each side
// declares the other dead after `miss` intervals with no message at all (PeerEvent::kDead); a
// message from a dead peer revives it (PeerEvent::kJoined). A Router raises kJoined for a peer's
// first message (whatever it is; Register is a convention, not a requirement); a Dealer watches
// its Router from connect time and raises kJoined only on a return from kDead. Pending requests
// to a peer that dies fail with Unavailable right away instead of waiting for their timeout.
// A worker restarted under the same name before its old self was declared dead takes over the
// identity (ZMQ_ROUTER_HANDOVER) without a kDead/kJoined pair; its new Register shows it. With
// RouterOptions::allow_handover off, a second connection under a connected identity is refused.
//
// Malformed input (undecodable frames, wrong frame count, other wire version, nesting bombs) is
// rejected on the I/O thread: logged at WARN, counted in decode_errors, never delivered, never
// fatal. A frame above max_frame_bytes makes ZeroMQ drop that connection (the peer reconnects).
// With unadmitted_max_bytes, a Router drops larger messages from peers it has not Admit()ted
// without decoding them, so a stranger cannot make it parse a big body.
//
// Not here: flow control. The inbox is unbounded; the data plane bounds what is in flight with
// credits (ARCHITECTURE.md), not this layer.
//
// Listeners bind 127.0.0.1 by default; port 0 picks a free port and endpoint() reports it.
// Security: a Router on a non-loopback address must have `curve` (CURVE encryption; the ZAP
// handler of core/curve_auth.h admits only `curve->client_keys`) and a Dealer dialing one must
// have its `curve` credentials; Bind/Connect refuse otherwise. On loopback CURVE is optional.
//
// Metrics: with options.metrics set, the endpoint also counts into that registry, labeled
// endpoint=<name>: tidal_messages_{sent,received}_total, tidal_message_{decode,send}_errors_total,
// tidal_message_late_replies_total, tidal_peers_dead_total, tidal_peers_alive (gauge) and
// tidal_request_duration_seconds (histogram, request to reply). stats() works either way.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/curve_auth.h"
#include "core/message.h"
#include "core/metrics.h"

namespace tidal {

struct HeartbeatOptions {
  absl::Duration interval = absl::Seconds(1);
  int miss = 3;  // dead after this many intervals of silence
};

struct PeerEvent {
  enum class Kind { kJoined, kDead };
  Kind kind = Kind::kJoined;
  std::string peer;
};

// What Receive() returns: a message, or news about a peer.
using Inbound = std::variant<Envelope, PeerEvent>;

struct MessagingStats {
  uint64_t sent = 0;            // messages written to the socket (heartbeats included)
  uint64_t received = 0;        // messages decoded (heartbeats included)
  uint64_t decode_errors = 0;   // messages rejected as malformed
  uint64_t send_errors = 0;     // messages the socket refused (peer gone)
  uint64_t late_replies = 0;    // replies with no waiting request
  uint64_t heartbeats_sent = 0;
  uint64_t heartbeats_received = 0;
  uint64_t peers_dead = 0;      // kDead events raised
};

struct RouterOptions {
  std::string endpoint = "tcp://127.0.0.1:0";  // zmq endpoint to bind; port 0 = ephemeral
  std::string name = "controller";             // header.sender of every message sent
  HeartbeatOptions heartbeat;                  // how long a silent peer lives
  int send_high_water_mark = 10000;            // messages queued per peer before sends wait
  absl::Duration linger = absl::Milliseconds(200);
  int64_t max_frame_bytes = int64_t{1} << 32;  // larger incoming frames drop the connection
  prometheus::Registry* metrics = nullptr;     // optional; must outlive the Router
  std::optional<CurveServerKeys> curve;        // required on a non-loopback endpoint
  // > 0: a message (all frames) above this many bytes from a peer not Admit()ted is dropped
  // before decoding (counted in decode_errors, WARN at most once a second). 0 = off.
  int64_t unadmitted_max_bytes = 0;
  // A new connection under a live peer's identity takes it over (ZMQ_ROUTER_HANDOVER). Off, the
  // newcomer is refused while the identity is connected: nobody can hijack a worker's name.
  bool allow_handover = true;
};

struct DealerOptions {
  std::string endpoint;   // the Router's endpoint, e.g. tcp://127.0.0.1:43127
  std::string name;       // routing identity, unique per worker: "rollout-1", "train-0"
  HeartbeatOptions heartbeat;
  int send_high_water_mark = 10000;
  absl::Duration linger = absl::Milliseconds(200);
  int64_t max_frame_bytes = int64_t{1} << 32;
  prometheus::Registry* metrics = nullptr;  // optional; must outlive the Dealer
  std::optional<CurveClientKeys> curve;  // required for a non-loopback Router
};

namespace messaging_internal {
class Endpoint;  // the I/O thread and queues shared by Router and Dealer (messaging.cpp)

// What Router and Dealer share, written once: the endpoint (its I/O thread) and the calls that do
// not depend on which side it is.
class EndpointHandle {
 public:
  ~EndpointHandle();
  EndpointHandle(const EndpointHandle&) = delete;
  EndpointHandle& operator=(const EndpointHandle&) = delete;

  // The endpoint: a Router's bound one with the real port ("tcp://127.0.0.1:43127"), a Dealer's
  // Router. name(): header.sender of every message sent (a Dealer's routing identity).
  const std::string& endpoint() const;
  const std::string& name() const;
  // Next message or peer event; DeadlineExceeded when none arrives within `timeout`
  // (absl::ZeroDuration() polls), Cancelled once the endpoint is shutting down.
  absl::StatusOr<Inbound> Receive(absl::Duration timeout);
  // The untyped form of Post (also for forwarding a received message).
  absl::Status PostOut(OutMessage out);
  MessagingStats stats() const;
  void Shutdown();

 protected:
  explicit EndpointHandle(std::unique_ptr<Endpoint> impl);
  std::unique_ptr<Endpoint> impl_;
};

// The typed verbs both endpoints offer, written once. `Derived` supplies the untyped forms
// (SendOut, ReplyOut, RequestOut); `To...` is what names the destination of a send or a request:
// the peer for a Router, nothing for a Dealer (it has one peer, its Router).
template <class Derived, class... To>
class TypedVerbs : public EndpointHandle {
 public:
  // Router: NotFound when `peer` has not been heard from or was declared dead.
  template <MessageType T>
  absl::Status Send(To... to, const T& msg, std::vector<Payload> frames = {}) {
    return self().SendOut(to..., MakeOut(msg, std::move(frames)));
  }
  // Answers `request` (routed back to its sender, reply_to = its id).
  template <MessageType T>
  absl::Status Reply(const Envelope& request, const T& msg, std::vector<Payload> frames = {}) {
    return self().ReplyOut(request, MakeOut(msg, std::move(frames)));
  }
  absl::Status ReplyError(const Envelope& request, const absl::Status& error) {
    return Reply(request, ErrorFromStatus(error));
  }
  // Sends and waits for the reply: DeadlineExceeded after `timeout`, Unavailable if the peer
  // dies first, the peer's status if it answers with Error.
  template <MessageType T>
  absl::StatusOr<Envelope> Request(To... to, const T& msg, absl::Duration timeout,
                                   std::vector<Payload> frames = {}) {
    return self().RequestOut(to..., MakeOut(msg, std::move(frames)), timeout).get();
  }
  template <MessageType T>
  std::future<absl::StatusOr<Envelope>> RequestAsync(To... to, const T& msg, absl::Duration timeout,
                                                     std::vector<Payload> frames = {}) {
    return self().RequestOut(to..., MakeOut(msg, std::move(frames)), timeout);
  }
  // Request() and decode the reply as Resp.
  template <MessageType Resp, MessageType T>
  absl::StatusOr<Resp> Call(To... to, const T& msg, absl::Duration timeout) {
    absl::StatusOr<Envelope> env = Request(to..., msg, timeout);
    if (!env.ok()) return env.status();
    return env->As<Resp>();
  }
  // Queues a local message for this endpoint's own Receive() (peer "", sender = name()); e.g. a
  // timer or the dashboard thread waking the controller loop. Cancelled after Shutdown().
  template <MessageType T>
  absl::Status Post(const T& msg, std::vector<Payload> frames = {}) {
    return PostOut(MakeOut(msg, std::move(frames)));
  }

 protected:
  explicit TypedVerbs(std::unique_ptr<Endpoint> impl) : EndpointHandle(std::move(impl)) {}

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
};

}  // namespace messaging_internal

// endpoint(), name(), Receive(), PostOut(), stats(), Shutdown(): EndpointHandle. Send, Reply,
// ReplyError, Request, RequestAsync, Call, Post: TypedVerbs, with the peer first.
class Router : public messaging_internal::TypedVerbs<Router, std::string_view> {
 public:
  static absl::StatusOr<std::unique_ptr<Router>> Bind(RouterOptions options);

  // Peers currently alive, sorted.
  std::vector<std::string> Peers() const;
  // Lifts options.unadmitted_max_bytes for `peer` (e.g. once its Register is verified); Revoke
  // restores it. A peer declared dead is revoked.
  void Admit(std::string_view peer);
  void Revoke(std::string_view peer);

  // Untyped forms behind the templates (also for forwarding a received message).
  absl::Status SendOut(std::string_view peer, OutMessage out);
  absl::Status ReplyOut(const Envelope& request, OutMessage out);
  std::future<absl::StatusOr<Envelope>> RequestOut(std::string_view peer, OutMessage out,
                                                   absl::Duration timeout);

 private:
  explicit Router(std::unique_ptr<messaging_internal::Endpoint> impl);
};

// As Router, to the one Router: Receive() gives messages from the Router (Envelope::peer = the
// Router's name) and PeerEvents about it (PeerEvent::peer = kRouterPeer).
class Dealer : public messaging_internal::TypedVerbs<Dealer> {
 public:
  static constexpr std::string_view kRouterPeer = "router";

  // Connecting does not wait for the Router: messages queue until it is reachable, and the
  // Router is reported dead if it stays silent for heartbeat.miss intervals.
  static absl::StatusOr<std::unique_ptr<Dealer>> Connect(DealerOptions options);

  // Whether the Router has been heard from within the heartbeat timeout.
  bool RouterAlive() const;

  absl::Status SendOut(OutMessage out);
  absl::Status ReplyOut(const Envelope& request, OutMessage out);
  std::future<absl::StatusOr<Envelope>> RequestOut(OutMessage out, absl::Duration timeout);

 private:
  explicit Dealer(std::unique_ptr<messaging_internal::Endpoint> impl);
};

}  // namespace tidal
