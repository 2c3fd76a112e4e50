// The broadcast transport as `tidal run` drives it (weight_sync/broadcast_publisher.h), on CPU:
// a publisher and subscribers over the shm backend, one thread per rank, the control plane
// replaced by direct calls (the key handed from the publisher's hook to the subscribers' tickets).
#include "weight_sync/broadcast_publisher.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

namespace tidal::weight_sync {
namespace {

std::vector<ParamSpec> Specs() { return {{"embed", {64, 32}}, {"norm", {32}}, {"q", {32, 32}}, {"head", {64, 32}}}; }

BroadcastOptions Options(absl::Duration timeout = absl::Seconds(20)) {
  BroadcastOptions o;
  o.device = "cpu";
  o.layout = PlanBuckets(Specs(), 3000).value();
  o.timeout = timeout;
  return o;
}

NamedTensors Weights(int seed) {
  at::manual_seed(seed);
  NamedTensors w;
  for (const auto& s : Specs()) w[s.name] = at::randn(s.shape);
  return w;
}

std::string Base() {
  static std::atomic<int> n{0};
  return "wsync-pub-" + std::to_string(getpid()) + "-" + std::to_string(n++);
}

// The key the publisher hands out, passed to the subscribers (the controller's part).
struct KeyBox {
  std::promise<std::string> key;
  std::shared_future<std::string> got = key.get_future().share();
};

struct Publisher {
  KeyBox box;
  std::vector<BroadcastOutcome> outcomes;
  std::vector<std::pair<int64_t, int64_t>> started;
  NamedTensors weights;
  std::unique_ptr<BroadcastPublisher> pub;
  Publisher(BroadcastOptions o, int64_t epoch, int world, const std::string& base) : weights(Weights(1)) {
    BroadcastPublisher::Hooks h;
    h.publish_id = [this](int64_t, const std::string& key) {
      box.key.set_value(key);
      return absl::OkStatus();
    };
    h.starting = [this](int64_t e, int64_t v) { started.emplace_back(e, v); };
    h.done = [this](const BroadcastOutcome& out) { outcomes.push_back(out); };
    pub = std::make_unique<BroadcastPublisher>(
        std::move(o), true, [this] { return absl::StatusOr<NamedTensors>(weights); }, nullptr, std::move(h));
    pub->SetEpoch({epoch, world, base});
  }
};

void ExpectBf16Of(const NamedTensors& got, const NamedTensors& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_EQ(got.at(name).scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(got.at(name), t.to(at::kBFloat16))) << name;
  }
}

TEST(BroadcastPublisherTest, AVersionReachesEverySubscriberVerifiedInBf16) {
  const std::string base = Base();
  Publisher p(Options(), 1, 3, base);
  std::vector<absl::StatusOr<NamedTensors>> got(2, absl::UnknownError("not run"));
  std::vector<std::thread> rx;
  for (int r = 1; r <= 2; ++r) {
    rx.emplace_back([&, r] {
      BroadcastSubscriber sub(Options());
      absl::Status s = sub.Join(GroupTicket{1, r, 3, p.box.got.get()});
      if (s.ok()) s = sub.Begin(1, 4);
      if (!s.ok()) {
        got[r - 1] = s;
        return;
      }
      std::optional<absl::Status> out = sub.Poll();  // CPU: complete once Begin returns
      if (!out) {
        got[r - 1] = absl::InternalError("no outcome");
        return;
      }
      if (!out->ok()) {
        got[r - 1] = *out;
        return;
      }
      auto w = sub.StagedWeights();
      if (w.ok()) {
        for (auto& [n, t] : *w) t = t.clone();  // the views die with the subscriber
      }
      got[r - 1] = w;
    });
  }
  absl::StatusOr<PublishStats> st = p.pub->Publish(4);
  for (auto& t : rx) t.join();
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->bytes, Options().layout.staging_bytes);
  ASSERT_EQ(p.outcomes.size(), 1u);
  EXPECT_TRUE(p.outcomes[0].status.ok()) << p.outcomes[0].status;
  EXPECT_EQ(p.outcomes[0].receivers, 2);
  EXPECT_EQ(p.started, (std::vector<std::pair<int64_t, int64_t>>{{1, 4}}));
  EXPECT_EQ(p.box.got.get(), base + ".e1");  // CPU: the key is the shm group's name
  for (auto& g : got) {
    ASSERT_TRUE(g.ok()) << g.status();
    ExpectBf16Of(*g, p.weights);
  }
  EXPECT_EQ(p.pub->connected_epoch(), 1);
}

TEST(BroadcastPublisherTest, WithoutReceiversNothingIsBroadcast) {
  Publisher p(Options(), 0, 1, Base());
  absl::StatusOr<PublishStats> st = p.pub->Publish(1);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->bytes, 0);
  EXPECT_TRUE(p.outcomes.empty());
  EXPECT_FALSE(p.box.got.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
}

// A receiver that never connects: the publisher's connect times out, the failure is reported
// (group dead) and Publish still returns OK (the trainer's version stands).
TEST(BroadcastPublisherTest, AMissingReceiverTimesOutAndIsReportedNotThrown) {
  Publisher p(Options(absl::Milliseconds(300)), 1, 2, Base());
  absl::StatusOr<PublishStats> st = p.pub->Publish(2);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->bytes, 0);
  ASSERT_EQ(p.outcomes.size(), 1u);
  EXPECT_FALSE(p.outcomes[0].status.ok());
  EXPECT_TRUE(p.outcomes[0].group_dead);
  EXPECT_EQ(p.outcomes[0].version, 2);
  EXPECT_EQ(p.pub->connected_epoch(), -1);
  EXPECT_TRUE(p.started.empty());  // receivers were never told to expect it
}

// A receiver that connected and then went away (its process died): the publisher's first
// collective times out; the group is reported dead and dropped, Publish still returns OK.
TEST(BroadcastPublisherTest, AReceiverThatDiesAfterConnectingFailsTheBroadcastNotThePublish) {
  Publisher p(Options(absl::Milliseconds(500)), 1, 2, Base());
  absl::Status joined = absl::UnknownError("not run");
  std::thread rx([&] {
    BroadcastSubscriber sub(Options(absl::Milliseconds(500)));
    joined = sub.Join(GroupTicket{1, 1, 2, p.box.got.get()});
  });  // the subscriber is gone before any bucket
  absl::StatusOr<PublishStats> st = p.pub->Publish(5);
  rx.join();
  ASSERT_TRUE(joined.ok()) << joined;
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->bytes, 0);
  ASSERT_EQ(p.outcomes.size(), 1u);
  EXPECT_FALSE(p.outcomes[0].status.ok());
  EXPECT_TRUE(p.outcomes[0].group_dead) << p.outcomes[0].status;
  EXPECT_EQ(p.started, (std::vector<std::pair<int64_t, int64_t>>{{1, 5}}));  // receivers were told
  EXPECT_EQ(p.pub->connected_epoch(), -1);
}

// TIDAL_FAULT_CORRUPT_BUCKET=V: the first broadcast of V carries a flipped byte; the receiver
// refuses it (DataLoss, nothing to apply) and takes the resend on the same group.
TEST(BroadcastPublisherTest, ACorruptBucketIsRefusedAndTheResendIsTaken) {
  setenv("TIDAL_FAULT_CORRUPT_BUCKET", "3", 1);
  Publisher p(Options(), 1, 2, Base());
  unsetenv("TIDAL_FAULT_CORRUPT_BUCKET");
  std::vector<absl::Status> outcomes;
  absl::StatusOr<NamedTensors> final_weights = absl::UnknownError("not run");
  std::thread rx([&] {
    BroadcastSubscriber sub(Options());
    absl::Status s = sub.Join(GroupTicket{1, 1, 2, p.box.got.get()});
    if (!s.ok()) {
      outcomes.push_back(s);
      return;
    }
    for (int i = 0; i < 2; ++i) {
      s = sub.Begin(1, 3);
      if (!s.ok()) {
        outcomes.push_back(s);
        return;
      }
      outcomes.push_back(sub.Poll().value_or(absl::InternalError("no outcome")));
      if (i == 0) EXPECT_FALSE(sub.StagedWeights().ok());  // nothing to apply after a refusal
    }
    final_weights = sub.StagedWeights();
    if (final_weights.ok()) {
      for (auto& [n, t] : *final_weights) t = t.clone();
    }
  });
  ASSERT_TRUE(p.pub->Publish(3).ok());
  ASSERT_TRUE(p.pub->Publish(3).ok());  // the resend
  rx.join();
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[0].code(), absl::StatusCode::kDataLoss) << outcomes[0];
  EXPECT_TRUE(outcomes[1].ok()) << outcomes[1];
  ASSERT_TRUE(final_weights.ok()) << final_weights.status();
  ExpectBf16Of(*final_weights, p.weights);
  // The publisher's side went through both times: the corruption is only seen by the receiver.
  ASSERT_EQ(p.outcomes.size(), 2u);
  EXPECT_TRUE(p.outcomes[0].status.ok());
  EXPECT_TRUE(p.outcomes[1].status.ok());
}

TEST(BroadcastPublisherTest, ASubscriberRefusesAVersionOfAnotherEpoch) {
  BroadcastSubscriber sub(Options());
  absl::Status s = sub.Begin(1, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("not connected"), std::string::npos) << s;
  EXPECT_EQ(sub.epoch(), -1);
  EXPECT_FALSE(sub.Poll().has_value());
  EXPECT_FALSE(sub.StagedWeights().ok());
}

}  // namespace
}  // namespace tidal::weight_sync
