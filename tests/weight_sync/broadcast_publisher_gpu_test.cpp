// The broadcast transport as `tidal run` drives it (weight_sync/broadcast_publisher.h) over NCCL
// across two GPUs: the publisher on cuda:0 (bf16 sources, as TrainRole::DeviceWeights gives them
// on CUDA), the subscriber on cuda:1 begins, keeps "stepping" while polling, and gets the
// version bit for bit. Skipped without two CUDA devices.
#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "weight_sync/broadcast_publisher.h"

namespace tidal::weight_sync {
namespace {

int Gpus() { return at::hasCUDA() ? static_cast<int>(at::detail::getCUDAHooks().getNumGPUs()) : 0; }

std::vector<ParamSpec> Specs() { return {{"embed", {1000, 72}}, {"w", {300, 97}}, {"norm", {96}}, {"big", {50001}}}; }

BroadcastOptions Options(const std::string& device) {
  BroadcastOptions o;
  o.device = device;
  o.layout = PlanBuckets(Specs(), 100000).value();
  o.timeout = absl::Seconds(60);
  return o;
}

TEST(BroadcastPublisherGpuTest, AVersionCrossesTwoGpusByNcclAndArrivesBitForBit) {
  if (Gpus() < 2) GTEST_SKIP() << "needs two CUDA devices";
  at::manual_seed(3);
  NamedTensors weights;
  for (const auto& s : Specs()) {
    weights[s.name] = at::randn(s.shape, at::TensorOptions().device(at::kCUDA, 0)).to(at::kBFloat16);
  }
  std::promise<std::string> key;
  std::shared_future<std::string> got = key.get_future().share();
  std::vector<BroadcastOutcome> outcomes;
  BroadcastPublisher::Hooks hooks;
  hooks.publish_id = [&](int64_t, const std::string& k) {
    key.set_value(k);
    return absl::OkStatus();
  };
  hooks.done = [&](const BroadcastOutcome& o) { outcomes.push_back(o); };
  BroadcastPublisher pub(Options("cuda:0"), true, [&] { return absl::StatusOr<NamedTensors>(weights); }, nullptr,
                         hooks);
  pub.SetEpoch({1, 2, "unused-on-cuda"});
  absl::StatusOr<NamedTensors> received = absl::UnknownError("not run");
  int polls = 0;
  std::thread rx([&] {
    BroadcastSubscriber sub(Options("cuda:1"));
    absl::Status s = sub.Join(GroupTicket{1, 1, 2, got.get()});
    if (s.ok()) s = sub.Begin(1, 9);
    if (!s.ok()) {
      received = s;
      return;
    }
    std::optional<absl::Status> out;
    while (!(out = sub.Poll())) ++polls;  // the engine would step here
    if (!out->ok()) {
      received = *out;
      return;
    }
    received = sub.StagedWeights();
    if (received.ok()) {
      for (auto& [n, t] : *received) t = t.cpu();
    }
  });
  absl::StatusOr<PublishStats> st = pub.Publish(9);
  rx.join();
  ASSERT_TRUE(st.ok()) << st.status();
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_TRUE(outcomes[0].status.ok()) << outcomes[0].status;
  EXPECT_EQ(got.get().size(), 128u);  // an ncclUniqueId
  ASSERT_TRUE(received.ok()) << received.status();
  for (const auto& [name, t] : weights) {
    EXPECT_TRUE(at::equal(received->at(name).view(at::kShort), t.cpu().view(at::kShort))) << name;
  }
}

}  // namespace
}  // namespace tidal::weight_sync
