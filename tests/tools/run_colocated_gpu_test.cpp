// `tidal run` on one GPU, colocated: a real controller and one worker process hosting trainer and
// engine on cuda:0 (NCCL world size 1, bf16 compute, bf16 engine, in-process weight updates,
// memory phases with optimizer offload). Checks prompt accounting, policy-version stamps, the
// rollout-vs-trainer logprob mismatch, that no weight byte went through the controller, and the
// per-phase memory figures. Skipped without a CUDA device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/cuda_devices.h"
#include "core/remove_tree.h"

namespace {

using nlohmann::json;

constexpr int kSftSteps = 12;
constexpr int kSteps = 4;

// Tiny model, 1-digit sums; a few steps are enough to exercise every path.
constexpr char kRecipe[] = R"(
name: gpu-colocated-e2e
seed: 5
model: {arch: qwen2, size: {hidden: 64, layers: 2, heads: 4, kv_heads: 2}, tokenizer: byte, dtype: bfloat16}
warmup: {sft: {steps: 12, lr: 3.0e-3, batch_size: 32}}
pool: {devices: "cuda:0", tags: {rollout: 1, train: 0}, policy: colocated}
rollout: {group_size: 4, max_new_tokens: 4, temperature: 1.0, max_staleness: 1, max_seqs: 64, kv_blocks: 256}
env: {plugin: "builtin:arithmetic", args: {min_digits: 1, max_digits: 1, ops: "+"}, eval_prompts: 16}
train: {lr: 1.0e-3, steps: 4, prompts_per_step: 8, precision: bf16, reduce_dtype: fp32, offload: true}
metrics: {port: 0}
control: {heartbeat_ms: 200, heartbeat_miss: 25}
)";

std::string Slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(RunColocatedGpu, OneGpuRunAccountsVersionsMismatchAndMemory) {
  if (tidal::CudaDeviceCount() < 1) GTEST_SKIP() << "no CUDA device";
  const std::string dir = std::string(TIDAL_BINARY_DIR) + "/gpu_colocated_e2e_" + std::to_string(getpid());
  (void)tidal::RemoveTree(dir);
  const std::string recipe = dir + ".yaml";
  std::ofstream(recipe) << kRecipe;
  const std::string out = dir + ".out";
  const std::string cmd = std::string("timeout 280 ") + TIDAL_BIN + " run " + recipe + " run_dir=" + dir +
                          " --quiet > " + out + " 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << Slurp(out) << "\n--- worker log:\n" << Slurp(dir + "/logs/worker-0.log");

  const json summary = json::parse(Slurp(dir + "/summary.json"));
  EXPECT_EQ(summary["steps"], kSteps);
  EXPECT_EQ(summary["prompts"]["unaccounted"], 0);
  EXPECT_GE(summary["prompts"]["trained"].get<int>(), 1);
  EXPECT_EQ(summary["weight_sync"]["bytes_relayed"], 0) << "colocated weights must not go through the controller";
  EXPECT_EQ(summary["weight_sync"]["rejected"], 0);
  EXPECT_GE(summary["eval_accuracy_end"].get<double>(), 0.0);

  std::vector<json> steps;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    json ev = json::parse(line, nullptr, false);
    if (ev.is_object() && ev.value("event", "") == "step") steps.push_back(ev);
  }
  ASSERT_EQ(steps.size(), static_cast<size_t>(kSteps));
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& ev = steps[i];
    // Every SFT step and every RL step is one policy version.
    EXPECT_EQ(ev["version"].get<int>(), kSftSteps + static_cast<int>(i) + 1) << ev.dump();
    EXPECT_LE(ev["staleness"].get<double>(), 1.0);
    const json& st = ev["stats"];
    const double kl = st["mismatch_kl"].get<double>();
    EXPECT_TRUE(std::isfinite(kl)) << ev.dump();
    EXPECT_GE(kl, 0.0);
    // bf16 engine vs bf16 trainer on the same weights: small, but measured (not identically 0).
    EXPECT_LT(kl, 0.05) << ev.dump();
    EXPECT_LT(st["mismatch_max_abs_diff"].get<double>(), 1.0) << ev.dump();
    EXPECT_GT(st["mem_peak_train_gib"].get<double>(), 0.0) << ev.dump();
    EXPECT_GT(st["mem_offloaded_gib"].get<double>(), 0.0) << ev.dump();
    EXPECT_GE(st["phase_switch_seconds"].get<double>(), 0.0);
    if (i > 0) EXPECT_GT(st["mem_peak_rollout_gib"].get<double>(), 0.0) << ev.dump();
  }
  (void)tidal::RemoveTree(dir);
}

}  // namespace
