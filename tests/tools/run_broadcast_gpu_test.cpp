// `tidal run` on two GPUs with a static split (cuda:0 trains, cuda:1 rolls out): `weight_sync.backend:
// auto` picks the NCCL broadcast (weight_sync/broadcast_publisher.h), every version goes from
// train rank 0 to the engine by NCCL in bf16, nothing through the controller's relay; a corrupt
// bucket is refused and resent. Skipped without two CUDA devices.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/cuda_devices.h"
#include "tests/tools/tidal_run.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using tidal::testing::ReadFile;
using tidal::testing::TidalRun;

constexpr char kRecipe[] = R"(
name: gpu-broadcast-e2e
seed: 5
model: {arch: qwen2, size: {hidden: 64, layers: 2, heads: 4, kv_heads: 2}, tokenizer: byte, dtype: bfloat16}
warmup: {sft: {steps: 4, lr: 3.0e-3, batch_size: 32}}
pool: {devices: "cuda:0-1", tags: {rollout: 1, train: 1}, policy: static}
rollout: {group_size: 4, max_new_tokens: 4, temperature: 1.0, max_staleness: 0, max_seqs: 64, kv_blocks: 256}
env: {plugin: "builtin:arithmetic", args: {min_digits: 1, max_digits: 1, ops: "+"}, eval_prompts: 0}
train: {lr: 1.0e-3, steps: 4, prompts_per_step: 8, precision: bf16}
weight_sync: {bucket_mb: 1, timeout_s: 60}
control: {heartbeat_ms: 200, heartbeat_miss: 25, budget: {weight_resends: 2}}
metrics: {port: 0}
)";

// The recipe file beside the run directory `dir`.
fs::path WriteRecipe(const fs::path& dir) {
  fs::create_directories(dir.parent_path());
  const fs::path recipe = dir.string() + ".yaml";
  std::ofstream(recipe) << kRecipe;
  return recipe;
}

TEST(RunBroadcastGpu, TwoGpuStaticRunTakesEveryVersionByNccl) {
  if (tidal::CudaDeviceCount() < 2) GTEST_SKIP() << "needs two CUDA devices";
  const fs::path dir = fs::path(TIDAL_BINARY_DIR) / "gpu_broadcast" / "static";
  TidalRun run(WriteRecipe(dir), dir, {});
  ASSERT_EQ(run.Wait(280), 0) << run.Output() << "\n--- worker 1:\n" << ReadFile(dir / "logs" / "worker-1.log");
  json s = run.Summary();
  EXPECT_EQ(s["steps"], 4);
  EXPECT_EQ(s["prompts"]["unaccounted"], 0) << s.dump(2);
  EXPECT_EQ(s["weight_sync"]["transport"], "nccl") << s.dump(2);
  EXPECT_EQ(s["weight_sync"]["bytes_relayed"], 0) << s.dump(2);
  EXPECT_GE(s["weight_sync"]["versions"].get<int64_t>(), 5) << s.dump(2);
  EXPECT_GT(s["weight_sync"]["bytes_broadcast"].get<int64_t>(), 0) << s.dump(2);
  EXPECT_EQ(s["weight_sync"]["rejected"], 0) << s.dump(2);
  EXPECT_NE(ReadFile(dir / "logs" / "worker-1.log").find("applied (broadcast, epoch"), std::string::npos);
}

TEST(RunBroadcastGpu, ACorruptBucketIsRefusedOnTheGpuAndResent) {
  if (tidal::CudaDeviceCount() < 2) GTEST_SKIP() << "needs two CUDA devices";
  const fs::path dir = fs::path(TIDAL_BINARY_DIR) / "gpu_broadcast" / "corrupt";
  // Warm-up versions 1..4; the second RL step publishes version 6.
  TidalRun run(WriteRecipe(dir), dir, {}, {{"TIDAL_FAULT_CORRUPT_BUCKET", "6"}});
  ASSERT_EQ(run.Wait(280), 0) << run.Output();
  json s = run.Summary();
  EXPECT_EQ(s["steps"], 4);
  EXPECT_EQ(s["prompts"]["unaccounted"], 0) << s.dump(2);
  EXPECT_EQ(s["weight_sync"]["rejected"], 1) << s.dump(2);
  EXPECT_NE(ReadFile(dir / "logs" / "controller.log").find("weight broadcast: resending version 6"), std::string::npos);
}

}  // namespace
