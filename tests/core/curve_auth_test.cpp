#include "core/curve_auth.h"

#include <gtest/gtest.h>
#include <zmq.h>

#include <chrono>
#include <thread>

#include "core/messaging.h"

namespace tidal {
namespace {

struct Hello {
  int64_t n = 0;
};
TIDAL_MESSAGE(Hello, n)

struct KeyPair {
  std::string pub, sec;
};
KeyPair NewKeys() {
  char p[41], s[41];
  EXPECT_EQ(zmq_curve_keypair(p, s), 0);
  return {p, s};
}

TEST(CurveAuthTest, LoopbackEndpoints) {
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:0"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://localhost:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://[::1]:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("ipc:///tmp/x"));
  EXPECT_TRUE(IsLoopbackEndpoint("inproc://x"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://0.0.0.0:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://*:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://10.1.2.3:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://eth0:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://127.0.0.1;10.0.0.1:5555"));
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
}

TEST(CurveAuthTest, NonLoopbackNeedsCurve) {
  RouterOptions ro;
  ro.endpoint = "tcp://0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<Router>> r = Router::Bind(ro);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  DealerOptions d;
  d.endpoint = "tcp://10.255.255.1:5555";
  d.name = "w";
  EXPECT_EQ(Dealer::Connect(d).status().code(), absl::StatusCode::kFailedPrecondition);
}

// One CURVE server; an admitted client talks, a client with another key pair and a client
// without CURVE never get a message through, and the refusal is counted.
TEST(CurveAuthTest, OnlyAdmittedClientKeysGetThrough) {
  KeyPair server = NewKeys(), client = NewKeys(), intruder = NewKeys();
  RouterOptions ro;
  ro.curve = CurveServerKeys{server.pub, server.sec, {client.pub}};
  ro.heartbeat = {absl::Milliseconds(100), 50};
  absl::StatusOr<std::unique_ptr<Router>> router = Router::Bind(ro);
  ASSERT_TRUE(router.ok()) << router.status();

  auto dial = [&](const std::string& name, std::optional<CurveClientKeys> keys) {
    DealerOptions d;
    d.endpoint = (*router)->endpoint();
    d.name = name;
    d.heartbeat = {absl::Milliseconds(100), 50};
    d.curve = std::move(keys);
    auto dealer = Dealer::Connect(d);
    EXPECT_TRUE(dealer.ok()) << dealer.status();
    return dealer.ok() ? *std::move(dealer) : nullptr;
  };
  const int64_t refused_before = CurveRefusals();
  auto spoof = dial("spoof", CurveClientKeys{server.pub, intruder.pub, intruder.sec});
  auto plain = dial("plain", std::nullopt);
  ASSERT_TRUE(spoof->Send(Hello{1}).ok());
  ASSERT_TRUE(plain->Send(Hello{2}).ok());
  auto good = dial("good", CurveClientKeys{server.pub, client.pub, client.sec});
  ASSERT_TRUE(good->Send(Hello{3}).ok());

  // The admitted client's message arrives; nothing from the others within a generous wait.
  bool got_good = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<Inbound> in = (*router)->Receive(absl::Milliseconds(100));
    if (!in.ok()) continue;
    if (auto* env = std::get_if<Envelope>(&*in)) {
      EXPECT_EQ(env->peer, "good") << "a message from " << env->peer << " got through";
      got_good |= env->peer == "good";
    } else {
      EXPECT_EQ(std::get<PeerEvent>(*in).peer, "good");
    }
  }
  EXPECT_TRUE(got_good);
  EXPECT_GT(CurveRefusals(), refused_before);  // the intruder's key was refused by ZAP
}

}  // namespace
}  // namespace tidal
