// Memory phases on one GPU (NCCL, world size 1, through the same factory the train role uses):
// entering the rollout phase returns the gradient accumulators and, with offload, the AdamW
// moments to the device (the allocator's counters drop by at least those bytes), the moments
// come back bitwise from pinned host memory, and training continues exactly as without the
// round trip. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>

#include "core/communicator_factory.h"
#include "core/cuda_devices.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/trainer.h"

namespace tidal::trainer {
namespace {

using testing::RandomBatch;

class MemoryPhaseGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() < 1) GTEST_SKIP() << "no CUDA device";
  }
};

std::unique_ptr<Communicator> OneGpuComm() {
  CommunicatorSpec s;
  s.device = "cuda:0";
  s.group = testing::UniqueGroup("mp");
  s.timeout = absl::Seconds(60);
  auto c = CreateCommunicatorForDevice(s);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

TrainerOptions GpuOptions() {
  TrainerOptions o;
  o.optimizer.lr = 1e-3;
  o.micro_batch_tokens = 256;
  o.sharding.device = at::Device(at::kCUDA, 0);
  o.sharding.compute_dtype = at::kBFloat16;  // bf16 compute, fp32 masters and reduction
  o.sharding.reduce_dtype = at::kFloat;
  return o;
}

TEST_F(MemoryPhaseGpu, CommunicatorIsNcclEvenForOneRank) {
  auto comm = OneGpuComm();
  ASSERT_NE(comm, nullptr);
  EXPECT_EQ(comm->backend(), "nccl");
  EXPECT_EQ(comm->world_size(), 1);
}

TEST_F(MemoryPhaseGpu, OffloadFreesGradientsAndMomentsAndBringsThemBackBitwise) {
  // Big enough that the freed bytes dwarf allocator rounding: ~6M parameters.
  ModelConfig c = TinyQwen2Config(/*hidden=*/256, /*layers=*/4, /*heads=*/4, /*kv_heads=*/2, /*vocab=*/512);
  const NamedTensors init = Model::RandomInit(c, 5, at::kFloat).weights();
  int64_t params = 0;
  for (const auto& [n, t] : init) params += t.numel();
  auto comm = OneGpuComm();
  ASSERT_NE(comm, nullptr);
  ShardingOptions so = GpuOptions().sharding;
  auto m = ShardedModel::Create(c, init, comm.get(), so);
  ASSERT_TRUE(m.ok()) << m.status();
  ShardedModel& model = **m;
  for (int step = 0; step < 2; ++step) {
    PackedBatch b;
    const auto opts = at::TensorOptions().dtype(at::kLong).device(at::kCUDA, 0);
    b.ids = at::randint(0, c.vocab_size, {64}, opts);
    b.cu_seqlens = at::tensor({0, 64}, at::kLong).to(opts.device());
    b.loss_rows = at::arange(0, 63, opts);
    b.targets = b.ids.narrow(0, 1, 63).contiguous();
    model.ForwardBackward(b, [](const at::Tensor& lp, const at::Tensor&) { return -lp.mean(); }, false);
    model.AdamWStep(AdamWOptions{.lr = 1e-3});
    model.ZeroGrad();
  }
  std::vector<at::Tensor> before;
  for (auto& [name, t] : model.StateTensors()) before.push_back(t.clone());
  SynchronizeDevice(0);
  const int64_t live = ReadDeviceMemory(0).allocated;
  ShardedModel::PhaseSwitch r = model.ReleaseForRollout(/*offload_optimizer=*/true);
  EXPECT_TRUE(model.released());
  EXPECT_EQ(r.bytes_offloaded, 8 * params) << "exp_avg + exp_avg_sq, fp32 (one rank: unpadded)";
  EXPECT_EQ(r.bytes_freed, 12 * params) << "moments + gradient accumulators";
  EXPECT_GE(live - ReadDeviceMemory(0).allocated, 12 * params) << "the allocator's live bytes fell by what was freed";
  // The masters stay: the policy can be read for the engine while released.
  EXPECT_EQ(model.DeviceWeights(at::kBFloat16).size(), init.size());
  ShardedModel::PhaseSwitch back = model.ReacquireForTraining();
  EXPECT_EQ(back.bytes_offloaded, 8 * params);
  EXPECT_FALSE(model.released());
  auto after = model.StateTensors();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_TRUE(after[i].second.is_cuda()) << after[i].first;
    EXPECT_TRUE(at::equal(after[i].second, before[i])) << after[i].first << " changed across the offload";
  }
}

TEST_F(MemoryPhaseGpu, TrainerStepsThroughPhasesWithBf16Compute) {
  ModelConfig c = TinyQwen2Config(128, 2, 4, 2, 256);
  const NamedTensors init = Model::RandomInit(c, 5, at::kFloat).weights();
  auto comm = OneGpuComm();
  ASSERT_NE(comm, nullptr);
  auto t = Trainer::Create(c, init, GpuOptions(), comm.get());
  ASSERT_TRUE(t.ok()) << t.status();
  for (uint32_t s = 0; s < 3; ++s) {
    auto st = (*t)->TrainStep(RandomBatch(16, c.vocab_size, 21 + s));
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_TRUE(std::isfinite(st->loss));
    EXPECT_EQ(st->step, s + 1);
    ShardedModel::PhaseSwitch r = (*t)->EnterRolloutPhase(/*offload_optimizer=*/true);
    EXPECT_GT(r.bytes_offloaded, 0);
    // The next TrainStep reacquires by itself on odd steps; explicitly on even ones.
    if (s % 2 == 0) (*t)->EnterTrainPhase();
  }
  auto w = (*t)->FullWeights(false);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_GT(testing::MaxAbsDiff(*w, init), 0.0) << "the policy moved";
}

TEST_F(MemoryPhaseGpu, DeviceWeightsStayOnTheDeviceInBf16) {
  ModelConfig c = TinyQwen2Config(64, 2, 4, 2, 128);
  const NamedTensors init = Model::RandomInit(c, 9, at::kFloat).weights();
  auto comm = OneGpuComm();
  auto t = Trainer::Create(c, init, GpuOptions(), comm.get());
  ASSERT_TRUE(t.ok()) << t.status();
  (*t)->EnterRolloutPhase(true);  // readable while released
  auto dev = (*t)->DeviceWeights(at::kBFloat16);
  ASSERT_TRUE(dev.ok()) << dev.status();
  for (const auto& [name, w] : init) {
    const at::Tensor& d = dev->at(name);
    EXPECT_TRUE(d.is_cuda()) << name;
    EXPECT_EQ(d.scalar_type(), at::kBFloat16) << name;
    EXPECT_TRUE(at::equal(d.cpu(), w.to(at::kBFloat16))) << name;
  }
}

}  // namespace
}  // namespace tidal::trainer
