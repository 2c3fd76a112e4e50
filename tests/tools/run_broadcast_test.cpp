// `weight_sync.backend: nccl` end to end on a CPU pool: a real `tidal run` (controller and worker
// processes, loopback sockets) whose weights go from train rank 0 to the rollout worker by the
// broadcast transport (weight_sync/broadcast_publisher.h) over the shm backend; nothing through
// the controller's relay. The same protocol as on GPUs (NCCL), including its faults.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/tools/run_fixture.h"
#include "tests/tools/tidal_run.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using tidal::testing::Clock;
using tidal::testing::ReadFile;
using tidal::testing::TidalRun;

// Static split on cpu:2: device 0 trains (train rank 0, the publisher), device 1 rolls out (the
// receiver). Warm-up versions 1..2, RL versions 3..6.
constexpr char kRecipe[] = R"(
name: broadcast
seed: 5
model: {arch: qwen2, size: {hidden: 32, layers: 1, heads: 2, kv_heads: 1}, tokenizer: byte}
warmup: {sft: {steps: 2, lr: 3.0e-3, batch_size: 16}}
pool: {devices: "cpu:2", tags: {rollout: 1, train: 1}, policy: static}
rollout: {group_size: 4, max_new_tokens: 8, temperature: 1.0, max_staleness: 1, max_seqs: 32}
env: {plugin: "builtin:letter_count", args: {min_len: 3, max_len: 6}, eval_prompts: 0}
train: {lr: 1.0e-3, steps: 4, prompts_per_step: 4}
weight_sync: {backend: nccl, bucket_mb: 1, timeout_s: 10}
metrics: {port: 0}
control: {heartbeat_ms: 200, heartbeat_miss: 15}
)";

class RunBroadcastTest : public tidal::testing::RunFixture {
 protected:
  RunBroadcastTest() : RunFixture("broadcast", kRecipe) {}
  // Every version the trainer made reached the rollout worker by broadcast, none through the relay.
  static void ExpectBroadcastOnly(const json& s, int64_t min_versions) {
    const json& w = s["weight_sync"];
    EXPECT_EQ(w["transport"], "nccl") << s.dump(2);
    EXPECT_EQ(w["bytes_relayed"], 0) << s.dump(2);
    EXPECT_GE(w["versions"].get<int64_t>(), min_versions) << s.dump(2);
    EXPECT_GT(w["bytes_broadcast"].get<int64_t>(), 0) << s.dump(2);
    EXPECT_GE(w["group_epochs"].get<int64_t>(), 1) << s.dump(2);
  }
  std::string WorkerLog(const TidalRun& run, int d) const {
    return ReadFile(run.dir() / "logs" / ("worker-" + std::to_string(d) + ".log"));
  }
};

TEST_F(RunBroadcastTest, WeightsReachTheRolloutWorkerByBroadcastNotThroughTheController) {
  TidalRun run(recipe_, root_ / "run", {});
  ASSERT_EQ(run.Wait(180), 0) << run.Output();
  json s = run.Summary();
  EXPECT_EQ(s["steps"], 4);
  ExpectNoneUnaccounted(s);
  // The initial version and one per RL step (warm-up steps do not publish).
  ExpectBroadcastOnly(s, 1 + 4);
  EXPECT_EQ(s["weight_sync"]["rejected"], 0) << s.dump(2);
  EXPECT_EQ(s["weight_sync"]["broadcast_failures"], 0) << s.dump(2);
  const std::string log = ReadFile(run.dir() / "logs" / "controller.log");
  EXPECT_NE(log.find("weight sync: nccl transport"), std::string::npos) << log;
  EXPECT_NE(run.Output().find("weight sync (broadcast)"), std::string::npos) << run.Output();
}

// A corrupt bucket (TIDAL_FAULT_CORRUPT_BUCKET, flipped on the publisher after the checksum) is
// refused by the receiver, which keeps serving its old version; the controller resends the
// version and the run finishes.
TEST_F(RunBroadcastTest, ACorruptBucketIsRefusedAndTheVersionIsResent) {
  TidalRun run(recipe_, root_ / "run", {"rollout.max_staleness=0", "control.budget.weight_resends=2"},
               {{"TIDAL_FAULT_CORRUPT_BUCKET", "4"}});
  ASSERT_EQ(run.Wait(180), 0) << run.Output();
  auto rejected = run.Events("weight_rejected");
  ASSERT_EQ(rejected.size(), 1u) << run.Output();
  EXPECT_EQ(rejected[0]["device"], 1);
  EXPECT_EQ(rejected[0]["version"], 4);
  EXPECT_LT(rejected[0]["serving_version"].get<int64_t>(), 4);  // the old version stayed
  EXPECT_NE(rejected[0]["error"].get<std::string>().find("checksum"), std::string::npos) << rejected[0].dump();
  json s = run.Summary();
  EXPECT_EQ(s["steps"], 4);
  ExpectNoneUnaccounted(s);
  ExpectBroadcastOnly(s, 1 + 4);
  EXPECT_EQ(s["weight_sync"]["rejected"], 1);
  EXPECT_NE(WorkerLog(run, 0).find("fault injection: corrupting broadcast of version 4"), std::string::npos);
  EXPECT_NE(ReadFile(run.dir() / "logs" / "controller.log").find("weight broadcast: resending version 4"),
            std::string::npos);
}

// The same fault on every resend: the run stops at control.budget.weight_resends naming the key.
TEST_F(RunBroadcastTest, AVersionThatNeverGetsThroughStopsAtTheResendBudget) {
  TidalRun run(recipe_, root_ / "run", {"rollout.max_staleness=0", "control.budget.weight_resends=2"},
               {{"TIDAL_FAULT_CORRUPT_BUCKET", "4:always"}});
  const int rc = run.Wait(180);
  EXPECT_NE(rc, 0);
  ASSERT_NE(rc, -1) << "the run did not stop: " << run.Output();
  EXPECT_NE(run.Output().find("control.budget.weight_resends"), std::string::npos) << run.Output();
  EXPECT_EQ(run.Events("weight_rejected").size(), 2u) << run.Output();
  ExpectNoneUnaccounted(run.Summary());
}

// The rollout worker is killed mid-run: it leaves the group (new epoch), its restart joins again
// and is sent the current version (a late joiner), and the run finishes with every prompt
// accounted.
TEST_F(RunBroadcastTest, AKilledReceiverRejoinsAndIsSentTheWeightsAgain) {
  TidalRun run(recipe_, root_ / "run", {"train.steps=8"});
  auto deadline = Clock::now() + std::chrono::seconds(90);
  pid_t victim = -1;
  while (Clock::now() < deadline && victim < 0) {
    if (run.Events("step").size() >= 2) {
      std::smatch m;
      const std::string log = ReadFile(run.dir() / "logs" / "controller.log");
      static const std::regex re(R"(worker 1 \(cpu:1, rollout\) pid (\d+))");
      if (std::regex_search(log, m, re)) victim = std::stoi(m[1]);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GT(victim, 0) << run.Output();
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_EQ(run.Wait(180), 0) << run.Output();
  json s = run.Summary();
  EXPECT_EQ(s["steps"], 8);
  ExpectNoneUnaccounted(s);
  // Versions published while the receiver was gone (the group had no receiver, or the one in
  // flight failed) are not counted; the initial one and the one its restart got are.
  ExpectBroadcastOnly(s, 2);
  EXPECT_EQ(s["devices"][1]["restarts"], 1) << s.dump(2);
  // join, leave, rejoin: at least three epochs.
  EXPECT_GE(s["weight_sync"]["group_epochs"].get<int64_t>(), 3) << s.dump(2);
  ASSERT_EQ(run.Events("worker_died").size(), 1u);
  // Static split: only device 1 rolls out, so the run finished only because its restart was sent
  // a version (the one owed to a late joiner, or the next one); its log shows it applied one.
  const std::string log = WorkerLog(run, 1);
  const size_t restarted = log.rfind("device cpu:1: train rank");
  ASSERT_NE(restarted, std::string::npos) << log;
  EXPECT_NE(log.find("applied (broadcast, epoch", restarted), std::string::npos) << log.substr(restarted);
}

// Elastic pool with a planned resize (cpu:3, train group of 1 -> 2 at step 2 -> 1 at step 4): the
// rollout device that joins the train group leaves the receivers while it is a train rank (it
// installs its own copy) and joins again when it goes back to rollout.
TEST_F(RunBroadcastTest, AnElasticResizeMovesADeviceOutOfTheGroupAndBack) {
  TidalRun run(recipe_, root_ / "run",
               {"pool.devices=cpu:3", "pool.tags.rollout=2", "pool.policy=elastic", "pool.elastic.resize=true",
                "pool.elastic.plan=2:2,4:1", "train.steps=6"});
  ASSERT_EQ(run.Wait(240), 0) << run.Output();
  json s = run.Summary();
  EXPECT_EQ(s["steps"], 6);
  ExpectNoneUnaccounted(s);
  EXPECT_EQ(s["train_group"]["resizes"], 2) << s.dump(2);
  ExpectBroadcastOnly(s, 1 + 6);
  EXPECT_EQ(s["weight_sync"]["rejected"], 0) << s.dump(2);
  // Two joins; the device leaving for the train group; the shrink (the train ranks rebuild their
  // transports: a new epoch) and the device coming back.
  EXPECT_EQ(s["weight_sync"]["group_epochs"], 5) << s.dump(2);
}

}  // namespace
