// The fault table of docs/reliability.md, row by row: each test injects one fault into a real
// `tidal run` (controller and worker processes on loopback, a tiny model) and checks the
// outcome the table promises and that no prompt is left unaccounted.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/tools/tidal_run.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using tidal::testing::ReadFile;
using tidal::testing::TidalRun;

// Like run_e2e_test's tiny run, without evaluation (the fault plugins score it too).
constexpr char kTinyRecipe[] = R"(
name: faults
seed: 5
model: {arch: qwen2, size: {hidden: 32, layers: 1, heads: 2, kv_heads: 1}, tokenizer: byte}
warmup: {sft: {steps: 2, lr: 3.0e-3, batch_size: 16}}
pool: {devices: "cpu:2", tags: {rollout: 1, train: 1}, policy: static}
rollout: {group_size: 4, max_new_tokens: 8, temperature: 1.0, max_staleness: 1, max_seqs: 32}
env: {plugin: "builtin:letter_count", args: {min_len: 3, max_len: 6}, eval_prompts: 0}
train: {lr: 1.0e-3, steps: 4, prompts_per_step: 4}
weight_sync: {bucket_mb: 1}
metrics: {port: 0}
control: {heartbeat_ms: 200, heartbeat_miss: 15}
)";

class RunFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(TIDAL_BINARY_DIR) / "faults" / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::create_directories(root_);
    recipe_ = root_ / "tiny.yaml";
    std::ofstream(recipe_) << kTinyRecipe;
  }
  // Builds tests/envs/plugins/<source> into the test's directory, as users build plugins.
  std::string Plugin(const std::string& source) {
    const std::string out = (root_ / ("lib" + fs::path(source).stem().string() + ".so")).string();
    const std::string cmd = "cc -std=c11 -shared -fPIC -O1 -I" TIDAL_SOURCE_DIR "/envs/include " TIDAL_SOURCE_DIR
                            "/tests/envs/plugins/" + source + " -o " + out + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return out;
  }
  // Every created prompt was trained on or dropped with a reason.
  static void ExpectNoneUnaccounted(const json& s) {
    ASSERT_TRUE(s.is_object()) << "no summary.json";
    const json& p = s["prompts"];
    EXPECT_EQ(p["unaccounted"], 0) << s.dump(2);
    EXPECT_EQ(p["created"].get<int64_t>(), p["trained"].get<int64_t>() + p["dropped"].get<int64_t>()) << s.dump(2);
  }
  fs::path root_, recipe_;
};

// Row "reward of 1e308 / -1e308 / NaN text": each such trajectory fails with a reason naming
// env.reward_range, its prompt is dropped, the run trains on the rest and exits 0.
TEST_F(RunFaultsTest, RewardsOutsideTheRangeAreDroppedAndTheRunFinishes) {
  const std::string so = Plugin("bad_reward.c");
  TidalRun run(recipe_, root_ / "run", {"env.plugin=" + so, "env.args={bad: huge, every: 7}"});
  ASSERT_EQ(run.Wait(120), 0) << run.Output();
  json s = run.Summary();
  ExpectNoneUnaccounted(s);
  EXPECT_EQ(s["steps"], 4);
  EXPECT_GT(s["prompts"]["dropped_by_reason"].value("rollout_error", 0), 0) << s.dump(2);
  const std::string log = ReadFile(run.dir() / "logs" / "controller.log");
  EXPECT_NE(log.find("outside env.reward_range"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(run.dir() / "final" / "model.safetensors"));
}

// Row "non-finite loss or gradient": a reward range wide enough to let 1e308 through (it
// overflows to inf in the trainer's float rewards) makes every step's loss NaN: each step is
// skipped (weights kept), and train.max_nonfinite_steps in a row stop the run with an error
// naming the knob. Nothing is exported.
TEST_F(RunFaultsTest, NonFiniteStepsStopTheRunNamingTheKnob) {
  const std::string so = Plugin("bad_reward.c");
  TidalRun run(recipe_, root_ / "run",
               {"env.plugin=" + so, "env.args={bad: huge, every: 1}", "env.reward_range=[-1e308, 1e308]",
                "train.max_nonfinite_steps=2", "train.steps=10"});
  const int rc = run.Wait(120);
  EXPECT_NE(rc, 0);
  EXPECT_NE(rc, -1) << "the run did not stop: " << run.Output();
  const std::string out = run.Output();
  EXPECT_NE(out.find("2 steps in a row had a non-finite loss or gradient"), std::string::npos) << out;
  EXPECT_NE(out.find("train.max_nonfinite_steps = 2"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(run.dir() / "final" / "model.safetensors"));
  ExpectNoneUnaccounted(run.Summary());
}

// Row "sizes that cannot work": refused before any worker starts, with the key to change.
TEST_F(RunFaultsTest, ImpossibleSizesFailBeforeWorkersStart) {
  struct Case {
    std::vector<std::string> overrides;
    std::string expect;
  };
  for (const Case& c : {Case{{"model.size.hidden=1000000"}, "model.size (hidden 1000000"},
                        Case{{"rollout.block_size=1000000000"}, "rollout.block_size (1000000000): one KV block takes"},
                        Case{{"rollout.kv_blocks=1", "rollout.block_size=4"}, "fewer than one completion needs"},
                        Case{{"rollout.max_new_tokens=5000"}, "leaves no room for a prompt"}}) {
    TidalRun run(recipe_, root_ / "run", c.overrides);
    const int rc = run.Wait(30);
    EXPECT_NE(rc, 0) << c.overrides[0];
    EXPECT_NE(rc, -1) << c.overrides[0];
    const std::string out = run.Output();
    EXPECT_NE(out.find(c.expect), std::string::npos) << c.overrides[0] << "\n" << out;
    EXPECT_NE(out.find(recipe_.string()), std::string::npos) << out;  // names the recipe file
    EXPECT_FALSE(fs::exists(run.dir() / "logs" / "worker-0.log")) << c.overrides[0] << ": a worker was started";
  }
}

}  // namespace
