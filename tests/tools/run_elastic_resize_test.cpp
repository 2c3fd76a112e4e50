// End-to-end tests of the elastic train group (pool.elastic.resize, issue #16): real `tidal run`
// processes on three CPU slots over loopback sockets. The train group grows (a rollout device
// joins training, the optimizer state re-sharded from 1 to 2 ranks) and shrinks back during the
// run; every move is in the tag timeline and every prompt is accounted for.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/tools/run_fixture.h"
#include "tests/tools/tidal_run.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using tidal::testing::ReadFile;
using tidal::testing::ReadJsonl;
using tidal::testing::TidalRun;

// A tiny letter_count run on cpu:3 (one train device, two rollout devices), KL on so the
// reference parameters travel with the state too.
constexpr char kRecipe[] = R"(
name: e2e_resize
seed: 5
model: {arch: qwen2, size: {hidden: 32, layers: 1, heads: 2, kv_heads: 1}, tokenizer: byte}
warmup: {sft: {steps: 3, lr: 3.0e-3, batch_size: 16}}
pool: {devices: "cpu:3", tags: {rollout: 2, train: 1}, policy: elastic}
rollout: {group_size: 4, max_new_tokens: 8, temperature: 1.0, max_staleness: 1, max_seqs: 32}
env: {plugin: "builtin:letter_count", args: {min_len: 3, max_len: 6}, eval_prompts: 8}
algo: {kl_coef: 0.1}
train: {lr: 1.0e-3, steps: 6, prompts_per_step: 4}
weight_sync: {bucket_mb: 1}
checkpoint: {every: 3}
metrics: {port: 0}
control: {heartbeat_ms: 200, heartbeat_miss: 15}
)";

class RunElasticResizeTest : public tidal::testing::RunFixture {
 protected:
  RunElasticResizeTest() : RunFixture("e2e", kRecipe, "resize.yaml") {}
  // The train-group moves of a run's timeline (lend/recall lines left out).
  static std::vector<json> GroupMoves(const fs::path& dir) {
    std::vector<json> out;
    for (json& m : ReadJsonl(dir / "tag_timeline.jsonl")) {
      const std::string r = m.value("reason", "");
      if (r != "lend" && r != "recall") out.push_back(m);
    }
    return out;
  }
};

// pool.elastic.plan fixes when: after step 2 the group grows to two devices, after step 4 it is
// back to one. The checkpoint at step 3 is written by the two-rank group.
TEST_F(RunElasticResizeTest, PlannedGrowAndShrinkDuringARun) {
  TidalRun run(recipe_, root_ / "run", {"pool.elastic.resize=true", "pool.elastic.plan=2:2,4:1"});
  ASSERT_EQ(run.Wait(120), 0) << run.Output();
  const json s = run.Summary();
  EXPECT_EQ(s["steps"], 6);
  // The throughput trace the policy was fed (the format tests/scheduler/traces/ replay): a header
  // and one row per step, with the device-seconds and loads of both devices.
  const std::string trace = ReadFile(run.dir() / "elastic_trace.csv");
  EXPECT_EQ(std::count(trace.begin(), trace.end(), '\n'), 7) << trace;
  EXPECT_EQ(trace.rfind("step,train_tokens,train_device_seconds,", 0), 0u) << trace;
  ExpectNoneUnaccounted(s, 6 * 4);
  EXPECT_EQ(s["train_group"]["resizes"], 2) << s.dump(2);
  EXPECT_EQ(s["train_group"]["min"], 1);
  EXPECT_EQ(s["train_group"]["max"], 2);
  EXPECT_EQ(s["train_group"]["final"], 1);

  // The timeline: one grow at step 2 (a rollout device joins; the group becomes [0, d]) and one
  // shrink at step 4 (the same device leaves; the group is [0] again).
  const std::vector<json> moves = GroupMoves(run.dir());
  ASSERT_EQ(moves.size(), 2u) << ReadFile(run.dir() / "tag_timeline.jsonl");
  const json& grow = moves[0];
  const json& shrink = moves[1];
  const int joined = grow["device"].get<int>();
  EXPECT_TRUE(joined == 1 || joined == 2) << grow.dump();
  EXPECT_EQ(grow["step"], 2);
  EXPECT_EQ(grow["from"], "rollout");
  EXPECT_EQ(grow["to"], "train");
  EXPECT_EQ(grow["reason"], "plan");
  EXPECT_EQ(grow["train_group"], json({0, joined}));
  EXPECT_EQ(shrink["step"], 4);
  EXPECT_EQ(shrink["device"], joined);
  EXPECT_EQ(shrink["from"], "train");
  EXPECT_EQ(shrink["to"], "rollout");
  EXPECT_EQ(shrink["reason"], "plan");
  EXPECT_EQ(shrink["train_group"], json({0}));

  // The events: both resizes, and training went on at every step (versions advance by one).
  const std::vector<json> resizes = run.Events("train_group_resize");
  ASSERT_EQ(resizes.size(), 2u);
  EXPECT_EQ(resizes[0]["to"], json({0, joined}));
  EXPECT_EQ(resizes[1]["to"], json({0}));
  const std::vector<json> steps = run.Events("step");
  ASSERT_EQ(steps.size(), 6u);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i]["step"], static_cast<int>(i) + 1);
  for (size_t i = 1; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i]["version"].get<int64_t>(), steps[i - 1]["version"].get<int64_t>() + 1);
  }
  // The joining worker built its trainer from the one-rank state, then dropped it again; the
  // train rank 0 re-formed the one-rank group from its cached communicator.
  const std::string joined_log = ReadFile(run.dir() / "logs" / ("worker-" + std::to_string(joined) + ".log"));
  EXPECT_NE(joined_log.find("re-sharded from 1 to 2 ranks (rank 1)"), std::string::npos) << joined_log;
  EXPECT_NE(joined_log.find("left of 1"), std::string::npos) << joined_log;
  const std::string rank0_log = ReadFile(run.dir() / "logs" / "worker-0.log");
  EXPECT_NE(rank0_log.find("re-sharded from 2 to 1 ranks (rank 0)"), std::string::npos) << rank0_log;
  EXPECT_NE(rank0_log.find("of 1 (cached communicator)"), std::string::npos) << rank0_log;
  // The step-3 checkpoint came from the two-rank group; the hand-off states are gone.
  EXPECT_TRUE(fs::exists(run.dir() / "checkpoints" / "step-3" / "controller_state.json"));
  EXPECT_FALSE(fs::exists(run.dir() / "reshard"));
  EXPECT_TRUE(fs::exists(run.dir() / "final" / "model.safetensors"));
}

// A run that ends with a two-rank group leaves a two-rank checkpoint; resuming starts from the
// recipe's one train device, which re-shards that checkpoint on load and trains on.
TEST_F(RunElasticResizeTest, ResumeFromACheckpointOfAnotherGroupSize) {
  {
    TidalRun run(recipe_, root_ / "run", {"pool.elastic.resize=true", "pool.elastic.plan=2:2"});
    ASSERT_EQ(run.Wait(120), 0) << run.Output();
    EXPECT_EQ(run.Summary()["train_group"]["final"], 2);
    ASSERT_TRUE(fs::exists(root_ / "run" / "checkpoints" / "step-6" / "rank-1.bin"));
  }
  // `tidal run --resume DIR` (TidalRun would clear the directory first).
  const std::string out = (root_ / "resume.out").string();
  const int rc = std::system(("timeout 120 " + std::string(TIDAL_BIN) + " run --resume " + (root_ / "run").string() +
                              " train.steps=8 --quiet > " + out + " 2>&1").c_str());
  ASSERT_EQ(rc, 0) << ReadFile(out);
  const json s = json::parse(ReadFile(root_ / "run" / "summary.json"), nullptr, false);
  EXPECT_EQ(s["steps"], 8);
  EXPECT_EQ(s["prompts"]["unaccounted"], 0) << s.dump(2);
  const std::string log = ReadFile(root_ / "run" / "logs" / "worker-0.log");
  EXPECT_NE(log.find("step-6 was saved by 2 ranks; re-sharding to 1"), std::string::npos) << log;
}

// No plan: the split policy decides from measured throughput. Rollouts here are short (4 new
// tokens) and a train step carries 8 groups of 4 through a 2-layer model on one rank, so training
// is the bottleneck by a wide margin (the policy's predicted gain is several times its
// hysteresis): the group grows at an early boundary, reason train_bound.
TEST_F(RunElasticResizeTest, PolicyGrowsTheGroupWhenTrainingIsTheBottleneck) {
  TidalRun run(recipe_, root_ / "run",
               {"pool.elastic.resize=true", "model.size.hidden=64", "model.size.layers=2",
                "rollout.max_new_tokens=4", "train.prompts_per_step=8", "train.steps=5", "checkpoint.every=0"});
  ASSERT_EQ(run.Wait(120), 0) << run.Output();
  const json s = run.Summary();
  EXPECT_EQ(s["steps"], 5);
  ExpectNoneUnaccounted(s, 5 * 8);
  EXPECT_GE(s["train_group"]["resizes"].get<int>(), 1) << s.dump(2);
  EXPECT_GE(s["train_group"]["max"].get<int>(), 2);
  const std::vector<json> moves = GroupMoves(run.dir());
  ASSERT_FALSE(moves.empty()) << ReadFile(run.dir() / "tag_timeline.jsonl");
  EXPECT_EQ(moves[0]["reason"], "train_bound") << moves[0].dump();
  EXPECT_EQ(moves[0]["to"], "train");
  for (const json& m : moves) {
    const std::string r = m["reason"];
    EXPECT_TRUE(r == "train_bound" || r == "rollout_bound" || r == "long_tail") << m.dump();
    EXPECT_TRUE(m.contains("train_group")) << m.dump();
  }
  const std::vector<json> resizes = run.Events("train_group_resize");
  ASSERT_FALSE(resizes.empty());
  // The policy's own prediction: the new period is shorter than the old one.
  EXPECT_LT(resizes[0]["predicted_period_s"][1].get<double>(), resizes[0]["predicted_period_s"][0].get<double>());
}

}  // namespace
