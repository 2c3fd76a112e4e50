// Memory phases of the sharded trainer on the CPU (shm): releasing before rollout and
// reacquiring before training leaves the optimisation bitwise unchanged, and the weight views an
// in-process engine reads (DeviceWeights) match the gathered masters in the asked dtype. The CUDA
// side (offload to pinned memory, allocator counters) is tests/trainer/memory_phase_gpu_test.cpp.
#include <gtest/gtest.h>

#include "tests/trainer/trainer_test_util.h"
#include "trainer/trainer.h"

namespace tidal::trainer {
namespace {

using testing::MaxAbsDiff;
using testing::RandomBatch;
using testing::RunRanks;
using testing::TinyConfig;

TrainerOptions Options() {
  TrainerOptions o;
  o.optimizer.lr = 1e-2;
  o.micro_batch_tokens = 24;
  return o;
}

// Three steps, optionally entering the rollout phase (and back) between them.
absl::StatusOr<NamedTensors> RunSteps(int world, bool phases, std::vector<ShardedModel::PhaseSwitch>* switches) {
  const ModelConfig c = TinyConfig(/*tied=*/false);
  const NamedTensors init = Model::RandomInit(c, 7, at::kFloat).weights();
  NamedTensors out;
  auto st = RunRanks(world, [&](Communicator& comm) -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, Options(), &comm));
    for (uint32_t s = 0; s < 3; ++s) {
      std::vector<TrainSample> mine;
      auto batch = RandomBatch(8, c.vocab_size, 11 + s);
      for (size_t i = comm.rank(); i < batch.size(); i += world) mine.push_back(batch[i]);
      TIDAL_RETURN_IF_ERROR(t->TrainStep(mine).status());
      if (phases) {
        auto r = t->EnterRolloutPhase(/*offload_optimizer=*/true);
        if (comm.rank() == 0 && switches) switches->push_back(r);
        // A second release is a no-op; the policy is readable while released.
        auto again = t->EnterRolloutPhase(true);
        if (again.bytes_freed != 0) return absl::InternalError("second release freed memory again");
        TIDAL_RETURN_IF_ERROR(t->FullWeights(true).status());
        if (s == 1) continue;  // the next TrainStep reacquires by itself
        t->EnterTrainPhase();
      }
    }
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w, t->FullWeights(false));
    if (comm.rank() == 0) out = std::move(w);
    return absl::OkStatus();
  });
  for (const auto& s : st) TIDAL_RETURN_IF_ERROR(s);
  return out;
}

TEST(MemoryPhase, ReleaseAndReacquireLeaveTrainingUnchanged) {
  for (int world : {1, 2}) {
    std::vector<ShardedModel::PhaseSwitch> switches;
    auto plain = RunSteps(world, false, nullptr);
    auto phased = RunSteps(world, true, &switches);
    ASSERT_TRUE(plain.ok()) << plain.status();
    ASSERT_TRUE(phased.ok()) << phased.status();
    EXPECT_EQ(MaxAbsDiff(*plain, *phased), 0.0) << "world " << world;
    ASSERT_EQ(switches.size(), 3u);
    // On the CPU only the gradient accumulators go (fp32, this rank's shard): nothing is offloaded.
    for (const auto& s : switches) {
      EXPECT_GT(s.bytes_freed, 0);
      EXPECT_EQ(s.bytes_offloaded, 0);
    }
  }
}

TEST(MemoryPhase, DeviceWeightsMatchTheMastersInTheAskedDtype) {
  const ModelConfig c = TinyConfig(/*tied=*/true);
  const NamedTensors init = Model::RandomInit(c, 3, at::kFloat).weights();
  auto st = RunRanks(2, [&](Communicator& comm) -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, Options(), &comm));
    TIDAL_RETURN_IF_ERROR(t->TrainStep(RandomBatch(4, c.vocab_size, comm.rank() + 1)).status());
    TIDAL_ASSIGN_OR_RETURN(NamedTensors full, t->FullWeights(true));
    TIDAL_ASSIGN_OR_RETURN(NamedTensors dev, t->DeviceWeights(at::kBFloat16));
    if (dev.size() != full.size()) return absl::InternalError("DeviceWeights names differ");
    for (const auto& [name, w] : full) {
      const at::Tensor& d = dev.at(name);
      if (d.scalar_type() != at::kBFloat16 || d.sizes() != w.sizes()) {
        return absl::InternalError("DeviceWeights: " + name + " has the wrong dtype or shape");
      }
      if (!at::equal(d, w.to(at::kBFloat16))) return absl::InternalError("DeviceWeights: " + name + " differs");
    }
    return absl::OkStatus();
  });
  for (const auto& s : st) EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace tidal::trainer
