#include "core/messaging.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

extern char** environ;

namespace tidal {
namespace {

using std::chrono::steady_clock;

// Test protocol.
struct Ping {
  int64_t n = 0;
};
TIDAL_MESSAGE(Ping, n)
struct Pong {
  int64_t n = 0;
  std::string from;
};
TIDAL_MESSAGE(Pong, n, from)
struct Trajectory {
  std::string id;
  std::vector<TensorSpec> tensors;
};
TIDAL_MESSAGE(Trajectory, id, tensors)
struct Hang {  // the peer never answers this
  int64_t unused = 0;
};
TIDAL_MESSAGE(Hang, unused)

// Tests about death detection use a short timeout; the others a generous one, so a loaded CI
// machine that stalls a thread for a moment cannot declare a live peer dead mid-test.
HeartbeatOptions FastHeartbeat() { return {absl::Milliseconds(100), 3}; }
HeartbeatOptions RelaxedHeartbeat() { return {absl::Milliseconds(100), 50}; }

std::unique_ptr<Router> BindRouter(HeartbeatOptions hb = RelaxedHeartbeat()) {
  RouterOptions o;
  o.heartbeat = hb;
  auto r = Router::Bind(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : nullptr;
}

std::unique_ptr<Dealer> ConnectDealer(const std::string& endpoint, const std::string& name,
                                      HeartbeatOptions hb = RelaxedHeartbeat()) {
  DealerOptions o;
  o.endpoint = endpoint;
  o.name = name;
  o.heartbeat = hb;
  auto d = Dealer::Connect(o);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *std::move(d) : nullptr;
}

// Receives until a message (not a PeerEvent) arrives.
template <class Endpoint>
absl::StatusOr<Envelope> NextMessage(Endpoint& ep, absl::Duration timeout = absl::Seconds(5)) {
  auto deadline = absl::Now() + timeout;
  for (;;) {
    auto in = ep.Receive(deadline - absl::Now());
    if (!in.ok()) return in.status();
    if (auto* env = std::get_if<Envelope>(&*in)) return std::move(*env);
  }
}

// Receives until a PeerEvent of `kind` arrives; messages in between are dropped.
template <class Endpoint>
absl::StatusOr<PeerEvent> NextEvent(Endpoint& ep, PeerEvent::Kind kind,
                                    absl::Duration timeout = absl::Seconds(5)) {
  auto deadline = absl::Now() + timeout;
  for (;;) {
    auto in = ep.Receive(deadline - absl::Now());
    if (!in.ok()) return in.status();
    if (auto* ev = std::get_if<PeerEvent>(&*in); ev != nullptr && ev->kind == kind) return *ev;
  }
}

TEST(MessagingTest, BindsLoopbackEphemeralPort) {
  auto router = BindRouter();
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->endpoint().rfind("tcp://127.0.0.1:", 0), 0u) << router->endpoint();
  EXPECT_NE(router->endpoint(), "tcp://127.0.0.1:0");
  // The same port again is taken.
  RouterOptions o;
  o.endpoint = router->endpoint();
  auto again = Router::Bind(o);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(again.status().message().find(router->endpoint()), std::string::npos);
}

TEST(MessagingTest, RoundTripsTypedMessagesAndTensorFrames) {
  auto router = BindRouter();
  auto dealer = ConnectDealer(router->endpoint(), "rollout-1");
  ASSERT_TRUE(dealer->Send(Register{"rollout", 1, ::getpid(), "localhost"}).ok());

  auto joined = NextEvent(*router, PeerEvent::Kind::kJoined);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->peer, "rollout-1");
  auto reg = NextMessage(*router);
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_EQ(reg->peer, "rollout-1");
  auto r = reg->As<Register>();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->role, "rollout");
  EXPECT_EQ(r->rank, 1);
  EXPECT_EQ(r->pid, ::getpid());
  EXPECT_EQ(router->Peers(), std::vector<std::string>{"rollout-1"});

  // Router -> worker with two binary frames (one large enough to go zero-copy).
  std::vector<int64_t> tokens(300000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int64_t>(i * 7919 % 151936);
  std::vector<float> small = {1.5f, -2.25f};
  Trajectory t{"traj-9",
               {{"tokens", "int64", {300, 1000}, 0}, {"logprobs", "float32", {2}, 1}}};
  ASSERT_TRUE(router
                  ->Send("rollout-1", t,
                         {Payload::Copy(tokens.data(), tokens.size() * 8),
                          Payload::Copy(small.data(), small.size() * 4)})
                  .ok());
  auto got = NextMessage(*dealer);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->peer, "controller");
  auto traj = got->As<Trajectory>();
  ASSERT_TRUE(traj.ok());
  EXPECT_EQ(traj->id, "traj-9");
  ASSERT_EQ(traj->tensors.size(), 2u);
  ASSERT_EQ(got->frames.size(), 2u);
  ASSERT_EQ(got->frames[0].size(), tokens.size() * 8);
  EXPECT_EQ(std::memcmp(got->frames[0].data(), tokens.data(), tokens.size() * 8), 0);
  EXPECT_EQ(std::memcmp(got->frames[1].data(), small.data(), small.size() * 4), 0);
  EXPECT_EQ(router->stats().decode_errors, 0u);
  EXPECT_EQ(dealer->stats().decode_errors, 0u);
}

TEST(MessagingTest, RequestResponseBothWays) {
  auto router = BindRouter();
  auto dealer = ConnectDealer(router->endpoint(), "train-0");
  ASSERT_TRUE(NextEvent(*router, PeerEvent::Kind::kJoined).ok());

  // Worker side answers on its own thread, like a worker's command loop.
  std::thread worker([&] {
    for (int i = 0; i < 2; ++i) {
      auto req = NextMessage(*dealer);
      ASSERT_TRUE(req.ok()) << req.status();
      if (req->Is<Ping>()) {
        ASSERT_TRUE(dealer->Reply(*req, Pong{req->As<Ping>()->n + 1, "train-0"}).ok());
      } else {
        ASSERT_TRUE(dealer->ReplyError(*req, absl::FailedPreconditionError("not ready")).ok());
      }
    }
  });
  auto pong = router->Call<Pong>("train-0", Ping{41}, absl::Seconds(5));
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->n, 42);
  EXPECT_EQ(pong->from, "train-0");
  auto err = router->Request("train-0", Hang{}, absl::Seconds(5));
  EXPECT_EQ(err.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(err.status().message(), "not ready");
  worker.join();

  // Worker -> controller, with several requests in flight at once.
  std::vector<std::future<absl::StatusOr<Envelope>>> futures;
  for (int i = 0; i < 8; ++i) futures.push_back(dealer->RequestAsync(Ping{i}, absl::Seconds(5)));
  for (int i = 0; i < 8; ++i) {
    auto req = NextMessage(*router);
    ASSERT_TRUE(req.ok());
    ASSERT_TRUE(router->Reply(*req, Pong{req->As<Ping>()->n * 10, "controller"}).ok());
  }
  for (int i = 0; i < 8; ++i) {
    auto env = futures[i].get();
    ASSERT_TRUE(env.ok()) << env.status();
    EXPECT_EQ(env->As<Pong>()->n, i * 10);  // each reply found its own request
  }
}

TEST(MessagingTest, RequestTimesOutAndLateReplyIsDropped) {
  auto router = BindRouter();
  auto dealer = ConnectDealer(router->endpoint(), "rollout-0");
  auto start = steady_clock::now();
  auto res = dealer->Request(Ping{1}, absl::Milliseconds(200));
  auto took = steady_clock::now() - start;
  EXPECT_EQ(res.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(res.status().message().find("Ping"), std::string::npos) << res.status();
  EXPECT_GE(took, std::chrono::milliseconds(200));
  EXPECT_LT(took, std::chrono::milliseconds(2000));

  // Answer after the deadline: dropped and counted, not delivered as a message.
  auto req = NextMessage(*router);
  ASSERT_TRUE(req.ok());
  ASSERT_TRUE(router->Reply(*req, Pong{2, "late"}).ok());
  for (int i = 0; i < 100 && dealer->stats().late_replies == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(dealer->stats().late_replies, 1u);
  auto next = dealer->Receive(absl::Milliseconds(50));
  EXPECT_EQ(next.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(MessagingTest, SendToUnknownPeerIsNotFound) {
  auto router = BindRouter();
  auto s = router->Send("nobody", Ping{1});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("nobody"), std::string::npos);
  auto r = router->Request("nobody", Ping{1}, absl::Seconds(1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST(MessagingTest, GarbageFramesAreRejectedWithoutCrashing) {
  auto router = BindRouter();
  // A raw DEALER that speaks no tidal protocol.
  zmq::context_t ctx;
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::routing_id, "vandal");
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(router->endpoint());
  std::vector<std::vector<std::string>> garbage = {
      {"\xc1\xc1\xc1"},                          // one frame, invalid MessagePack
      {"\x93\x01\x02", "\x01"},                  // header is an array, not a map
      {std::string(1 << 16, '\x91'), "\x80"},    // nesting bomb
      {"", "", "", ""},                          // empty frames
  };
  for (const auto& msg : garbage) {
    std::vector<zmq::const_buffer> parts;
    for (const auto& f : msg) parts.push_back(zmq::buffer(f));
    ASSERT_TRUE(zmq::send_multipart(raw, parts));
  }
  for (int i = 0; i < 200 && router->stats().decode_errors < garbage.size(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(router->stats().decode_errors, garbage.size());
  // Nothing was delivered, the vandal did not count as a peer, and the router still works.
  EXPECT_EQ(router->Receive(absl::ZeroDuration()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(router->Peers().empty());
  auto dealer = ConnectDealer(router->endpoint(), "rollout-2");
  ASSERT_TRUE(dealer->Send(Ping{5}).ok());
  auto ping = NextMessage(*router);
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->As<Ping>()->n, 5);
}

TEST(MessagingTest, OversizedFrameDropsTheConnectionNotTheRouter) {
  RouterOptions o;
  o.heartbeat = RelaxedHeartbeat();
  o.max_frame_bytes = 1024;
  auto router = Router::Bind(o);
  ASSERT_TRUE(router.ok());
  auto big = ConnectDealer((*router)->endpoint(), "rollout-9");
  ASSERT_TRUE(big->Send(Ping{1}, {Payload::FromString(std::string(4096, 'z'))}).ok());
  // Only the join (from a heartbeat) may arrive; the oversized message never does.
  auto deadline = absl::Now() + absl::Milliseconds(500);
  for (;;) {
    auto in = (*router)->Receive(deadline - absl::Now());
    if (!in.ok()) break;
    EXPECT_FALSE(std::holds_alternative<Envelope>(*in));
  }
  auto ok = ConnectDealer((*router)->endpoint(), "rollout-10");
  ASSERT_TRUE(ok->Send(Ping{2}).ok());
  auto ping = NextMessage(**router);
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->As<Ping>()->n, 2);
}

// A peer that has not been admitted gets only small messages through (a Register); once the
// controller admits it, large frames (weight buckets) flow; death revokes the admission.
TEST(MessagingTest, UnadmittedPeersAreCappedSmallUntilAdmitted) {
  RouterOptions o;
  o.heartbeat = RelaxedHeartbeat();
  o.unadmitted_max_bytes = 4096;
  auto router = Router::Bind(o);
  ASSERT_TRUE(router.ok());
  auto peer = ConnectDealer((*router)->endpoint(), "rollout-3");
  ASSERT_TRUE(peer->Send(Ping{1}, {Payload::FromString(std::string(64 << 10, 'z'))}).ok());
  ASSERT_TRUE(peer->Send(Ping{2}).ok());  // small: delivered
  auto small = NextMessage(**router);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->As<Ping>()->n, 2) << "the 64 KiB message from an unadmitted peer was delivered";
  EXPECT_EQ((*router)->stats().decode_errors, 1u);
  (*router)->Admit("rollout-3");
  ASSERT_TRUE(peer->Send(Ping{3}, {Payload::FromString(std::string(64 << 10, 'y'))}).ok());
  auto big = NextMessage(**router);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->As<Ping>()->n, 3);
  EXPECT_EQ(big->frames.at(0).size(), 64u << 10);
  (*router)->Revoke("rollout-3");
  ASSERT_TRUE(peer->Send(Ping{4}, {Payload::FromString(std::string(64 << 10, 'x'))}).ok());
  ASSERT_TRUE(peer->Send(Ping{5}).ok());
  auto after = NextMessage(**router);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->As<Ping>()->n, 5);
  EXPECT_EQ((*router)->stats().decode_errors, 2u);
}

// Without handover, a second process connecting under a live worker's name gets nothing: the
// controller's messages keep reaching the real worker.
TEST(MessagingTest, WithoutHandoverANameCannotBeHijacked) {
  RouterOptions o;
  o.heartbeat = RelaxedHeartbeat();
  o.allow_handover = false;
  auto router = Router::Bind(o);
  ASSERT_TRUE(router.ok());
  auto real = ConnectDealer((*router)->endpoint(), "worker-1-100");
  ASSERT_TRUE(real->Send(Ping{1}).ok());
  ASSERT_TRUE(NextMessage(**router).ok());
  auto thief = ConnectDealer((*router)->endpoint(), "worker-1-100");
  ASSERT_TRUE(thief->Send(Ping{2}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE((*router)->Send("worker-1-100", Pong{7, "controller"}).ok());
  auto got = NextMessage(*real);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->As<Pong>()->n, 7);
  auto stolen = NextMessage(*thief, absl::Milliseconds(300));
  EXPECT_FALSE(stolen.ok()) << "the second connection received " << stolen->type();
}

TEST(MessagingTest, DealerRejectsGarbageFromItsRouter) {
  zmq::context_t ctx;
  zmq::socket_t raw(ctx, zmq::socket_type::router);
  raw.set(zmq::sockopt::linger, 0);
  raw.bind("tcp://127.0.0.1:0");
  auto dealer = ConnectDealer(raw.get(zmq::sockopt::last_endpoint), "rollout-3");
  // The dealer's first heartbeat tells the raw router its identity.
  std::vector<zmq::message_t> hb;
  ASSERT_TRUE(zmq::recv_multipart(raw, std::back_inserter(hb)));
  ASSERT_EQ(hb[0].to_string(), "rollout-3");
  std::string ident = hb[0].to_string();
  // Header: a str8 announcing 5 bytes but carrying 2; body: an empty map.
  std::vector<zmq::const_buffer> parts = {zmq::buffer(ident), zmq::str_buffer("\xd9\x05" "ab"),
                                          zmq::str_buffer("\x80")};
  ASSERT_TRUE(zmq::send_multipart(raw, parts));
  for (int i = 0; i < 200 && dealer->stats().decode_errors == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(dealer->stats().decode_errors, 1u);
}

TEST(MessagingTest, SilentWorkerIsReportedDeadAndPendingRequestFails) {
  auto router = BindRouter(FastHeartbeat());
  auto dealer = ConnectDealer(router->endpoint(), "rollout-4", FastHeartbeat());
  ASSERT_TRUE(NextEvent(*router, PeerEvent::Kind::kJoined).ok());
  auto pending = router->RequestAsync("rollout-4", Hang{}, absl::Seconds(30));
  dealer.reset();  // stops heartbeating
  auto dead = NextEvent(*router, PeerEvent::Kind::kDead);
  ASSERT_TRUE(dead.ok()) << dead.status();
  EXPECT_EQ(dead->peer, "rollout-4");
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(1)), std::future_status::ready);
  EXPECT_EQ(pending.get().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(router->Peers().empty());
  EXPECT_EQ(router->Send("rollout-4", Ping{}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(router->stats().peers_dead, 1u);
}

TEST(MessagingTest, WorkerDetectsDeadRouterAndItsReturn) {
  auto router = BindRouter(FastHeartbeat());
  std::string endpoint = router->endpoint();
  auto dealer = ConnectDealer(endpoint, "rollout-5", FastHeartbeat());
  ASSERT_TRUE(NextEvent(*router, PeerEvent::Kind::kJoined).ok());
  EXPECT_TRUE(dealer->RouterAlive());
  router.reset();
  auto dead = NextEvent(*dealer, PeerEvent::Kind::kDead);
  ASSERT_TRUE(dead.ok()) << dead.status();
  EXPECT_EQ(dead->peer, Dealer::kRouterPeer);
  EXPECT_FALSE(dealer->RouterAlive());

  // A controller restarted on the same endpoint: the worker reconnects and sees it rejoin.
  RouterOptions o;
  o.endpoint = endpoint;
  o.heartbeat = FastHeartbeat();
  auto again = Router::Bind(o);
  ASSERT_TRUE(again.ok()) << again.status();
  auto back = NextEvent(*dealer, PeerEvent::Kind::kJoined);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(dealer->RouterAlive());
}

TEST(MessagingTest, PostWakesTheReceiveLoopFromAnotherThread) {
  auto router = BindRouter();
  auto dealer = ConnectDealer(router->endpoint(), "rollout-11");
  std::thread timer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(router->Post(Ping{77}).ok());
  });
  // The loop sees remote and local messages through the same Receive().
  ASSERT_TRUE(dealer->Send(Ping{1}).ok());
  std::vector<std::pair<std::string, int64_t>> seen;
  while (seen.size() < 2) {
    auto env = NextMessage(*router);
    ASSERT_TRUE(env.ok()) << env.status();
    seen.emplace_back(env->peer, env->As<Ping>()->n);
  }
  timer.join();
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, int64_t>>{{"", 77}, {"rollout-11", 1}}));
  router->Shutdown();
  EXPECT_EQ(router->Post(Ping{}).code(), absl::StatusCode::kCancelled);
}

TEST(MessagingTest, ShutdownWakesReceiversAndFailsPendingRequests) {
  auto router = BindRouter();
  auto dealer = ConnectDealer(router->endpoint(), "rollout-8");
  auto pending = dealer->RequestAsync(Hang{}, absl::Seconds(30));
  std::thread receiver([&] {
    // Loops like a worker's command loop until the endpoint shuts down.
    for (;;) {
      auto in = dealer->Receive(absl::InfiniteDuration());
      if (!in.ok()) {
        EXPECT_EQ(in.status().code(), absl::StatusCode::kCancelled);
        return;
      }
    }
  });
  ASSERT_TRUE(NextMessage(*router).ok());  // the request arrived; nobody answers it
  dealer->Shutdown();
  receiver.join();
  EXPECT_EQ(pending.get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(dealer->Send(Ping{}).code(), absl::StatusCode::kCancelled);
  dealer->Shutdown();  // idempotent
}

TEST(MessagingTest, CountsIntoAMetricsRegistry) {
  prometheus::Registry metrics;
  RouterOptions ro;
  ro.heartbeat = RelaxedHeartbeat();
  ro.metrics = &metrics;
  auto router = Router::Bind(ro);
  ASSERT_TRUE(router.ok());
  DealerOptions dopt;
  dopt.endpoint = (*router)->endpoint();
  dopt.name = "rollout-6";
  dopt.heartbeat = RelaxedHeartbeat();
  dopt.metrics = &metrics;
  auto dealer = Dealer::Connect(dopt);
  ASSERT_TRUE(dealer.ok());
  ASSERT_TRUE(NextEvent(**router, PeerEvent::Kind::kJoined).ok());

  auto reply = std::async(std::launch::async, [&] {
    auto req = NextMessage(**router);
    if (req.ok()) (void)(*router)->Reply(*req, Pong{1, "controller"});
  });
  ASSERT_TRUE((*dealer)->Call<Pong>(Ping{1}, absl::Seconds(5)).ok());
  reply.get();

  auto& alive = GaugeFamily(metrics, "tidal_peers_alive", "Peers currently alive.");
  EXPECT_EQ(alive.Add({{"endpoint", "controller"}}).Value(), 1);
  EXPECT_EQ(alive.Add({{"endpoint", "rollout-6"}}).Value(), 1);
  std::string text = RenderText(metrics.Collect());
  EXPECT_NE(text.find("tidal_request_duration_seconds_count{endpoint=\"rollout-6\"} 1\n"),
            std::string::npos)
      << text;
  auto& received = CounterFamily(metrics, "tidal_messages_received_total", "Messages received and decoded.");
  EXPECT_EQ(received.Add({{"endpoint", "controller"}}).Value(), (*router)->stats().received);
  EXPECT_GE((*router)->stats().received, 2u);  // a heartbeat and the request at least
}

// ---- A peer in another process, killed with SIGKILL ----------------------------------------
// The test binary doubles as the peer: with TIDAL_TEST_MESSAGING_PEER set it runs PeerMain()
// before GoogleTest starts and never returns.

constexpr char kPeerEnv[] = "TIDAL_TEST_MESSAGING_PEER";

[[noreturn]] void PeerMain(const char* endpoint) {
  DealerOptions o;
  o.endpoint = endpoint;
  o.name = "rollout-7";
  o.heartbeat = FastHeartbeat();
  auto dealer = Dealer::Connect(o);
  if (!dealer.ok()) _exit(3);
  (void)(*dealer)->Send(Register{"rollout", 7, ::getpid(), "localhost"});
  for (;;) {
    auto in = (*dealer)->Receive(absl::InfiniteDuration());
    if (!in.ok()) _exit(4);
    auto* env = std::get_if<Envelope>(&*in);
    if (env != nullptr && env->Is<Ping>()) {
      (void)(*dealer)->Reply(*env, Pong{env->As<Ping>()->n, "rollout-7"});
    }
  }
}

const bool kPeerMode = [] {
  if (const char* ep = std::getenv(kPeerEnv)) PeerMain(ep);
  return false;
}();

TEST(MessagingTest, KilledPeerProcessIsDetectedByHeartbeat) {
  const HeartbeatOptions hb{absl::Milliseconds(100), 3};
  auto router = BindRouter(hb);
  std::string env_var = std::string(kPeerEnv) + "=" + router->endpoint();
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(env_var.data());
  envp.push_back(nullptr);
  char arg0[] = "messaging-peer";
  char* argv[] = {arg0, nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);

  auto joined = NextEvent(*router, PeerEvent::Kind::kJoined, absl::Seconds(10));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->peer, "rollout-7");
  auto reg = NextMessage(*router);
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ(reg->As<Register>()->pid, pid);
  auto pong = router->Call<Pong>("rollout-7", Ping{99}, absl::Seconds(5));
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->n, 99);

  auto pending = router->RequestAsync("rollout-7", Hang{}, absl::Seconds(60));
  auto killed_at = steady_clock::now();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(wstatus));
  EXPECT_EQ(WTERMSIG(wstatus), SIGKILL);

  auto dead = NextEvent(*router, PeerEvent::Kind::kDead, absl::Seconds(10));
  auto detect = steady_clock::now() - killed_at;
  ASSERT_TRUE(dead.ok()) << dead.status();
  EXPECT_EQ(dead->peer, "rollout-7");
  // Dead once silent for miss * interval (300 ms) after its last heartbeat: typically 200-400 ms
  // after the kill, and long before the pending request's own 60 s timeout. (No lower bound: a
  // stalled peer may have sent its last heartbeat earlier than one interval before the kill.)
  EXPECT_LT(detect, std::chrono::seconds(5));
  RecordProperty("detect_ms",
                 static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(detect).count()));
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(1)), std::future_status::ready);
  EXPECT_EQ(pending.get().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(router->Peers().empty());
}

}  // namespace
}  // namespace tidal
