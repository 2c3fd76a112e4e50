// The trainer over NCCL on two GPUs against the same run over shm on the CPU. Skipped unless the
// build has NCCL and two GPUs are visible (CI has none; run on a GPU machine).
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <gtest/gtest.h>

#include <mutex>

#include "core/communicator_nccl.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/trainer.h"

namespace tidal::trainer {
namespace {

using testing::MaxAbsDiff;
using testing::RandomBatch;
using testing::RunRanks;
using testing::TinyConfig;

int Gpus() { return (NcclAvailable() && at::hasCUDA()) ? at::detail::getCUDAHooks().getNumGPUs() : 0; }

struct Result {
  NamedTensors weights;
  std::vector<StepStats> stats;
};

Result Train(bool gpu, at::ScalarType compute, const ModelConfig& c, const NamedTensors& init,
             const std::vector<std::vector<TrainSample>>& batches) {
  Result res;
  std::mutex mu;
  auto st = RunRanks(2, [&](Communicator& shm) -> absl::Status {
    std::unique_ptr<Communicator> nccl;
    Communicator* comm = &shm;
    TrainerOptions o;
    o.optimizer.lr = 1e-2;
    o.micro_batch_tokens = 24;
    o.sharding.compute_dtype = compute;
    o.sharding.reduce_dtype = compute;
    if (gpu) {
      NcclCommunicatorOptions no;
      no.rank = shm.rank();
      no.world_size = 2;
      no.device = shm.rank();
      no.timeout = absl::Seconds(60);
      TIDAL_ASSIGN_OR_RETURN(nccl, CreateNcclCommunicator(no, NcclIdViaCommunicator(shm)));
      comm = nccl.get();
      o.sharding.device = at::Device(at::kCUDA, shm.rank());
    }
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, o, comm));
    std::vector<StepStats> stats;
    for (const auto& batch : batches) {
      std::vector<TrainSample> mine;
      for (size_t i = comm->rank(); i < batch.size(); i += 2) mine.push_back(batch[i]);
      TIDAL_ASSIGN_OR_RETURN(StepStats s, t->TrainStep(mine));
      stats.push_back(s);
    }
    const std::string dir = std::string(TIDAL_BINARY_DIR) + "/nccl_ckpt_" + std::to_string(getpid());
    TIDAL_RETURN_IF_ERROR(t->SaveCheckpoint(dir, "x"));
    TIDAL_ASSIGN_OR_RETURN(std::string loader, t->LoadCheckpoint(dir));
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w, t->FullWeights());
    if (comm->rank() == 0) {
      testing::RemoveTree(dir);
      std::lock_guard<std::mutex> l(mu);
      res.weights = std::move(w);
      res.stats = stats;
    }
    return absl::OkStatus();
  });
  for (size_t r = 0; r < st.size(); ++r) EXPECT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
  return res;
}

TEST(TrainerNccl, TwoGpusMatchTheShmRun) {
  if (Gpus() < 2) GTEST_SKIP() << "needs NCCL and two GPUs";
  at::set_num_threads(1);
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 7).weights();
  std::vector<std::vector<TrainSample>> batches;
  for (int s = 0; s < 3; ++s) batches.push_back(RandomBatch(10, c.vocab_size, 100 + s));
  Result cpu = Train(false, at::kFloat, c, init, batches);
  Result gpu = Train(true, at::kFloat, c, init, batches);
  ASSERT_EQ(gpu.stats.size(), 3u);
  const double diff = MaxAbsDiff(cpu.weights, gpu.weights);
  std::printf("max |gpu - cpu| after 3 steps: %.3g\n", diff);
  EXPECT_LE(diff, 1e-4);
  EXPECT_NEAR(gpu.stats[0].loss, cpu.stats[0].loss, 1e-5);
  Result bf16 = Train(true, at::kBFloat16, c, init, batches);
  EXPECT_LE(MaxAbsDiff(bf16.weights, cpu.weights), 0.1);
  EXPECT_TRUE(std::isfinite(bf16.stats.back().loss));
}

}  // namespace
}  // namespace tidal::trainer
