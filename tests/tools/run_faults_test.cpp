// The fault table of docs/reliability.md, row by row: each test injects one fault into a real
// `tidal run` (controller and worker processes on loopback, a tiny model) and checks the
// outcome the table promises and that no prompt is left unaccounted.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

#include "core/message.h"
#include "core/messaging.h"
#include "tests/tools/run_fixture.h"
#include "tests/tools/tidal_run.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using tidal::testing::Clock;
using tidal::testing::ReadFile;
using tidal::testing::TidalRun;

// Polls the controller log for `re` until it matches (returns group 1) or `timeout_s` passes.
std::string WaitForLog(const TidalRun& run, const std::regex& re, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    std::smatch m;
    const std::string log = ReadFile(run.dir() / "logs" / "controller.log");
    if (std::regex_search(log, m, re)) return m[1];
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "";
}

// Waits until the run has trained `steps` steps (its metrics.jsonl says so).
bool WaitForSteps(const TidalRun& run, size_t steps, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    if (run.Events("step").size() >= steps) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// The pid of train rank 0's worker (device 0 in the tiny recipe), "" if it never started.
std::string TrainRankPid(const TidalRun& run) {
  return WaitForLog(run, std::regex(R"(worker 0 \(cpu:0, train\) pid (\d+))"), 60);
}

// Waits until the controller logs a committed checkpoint.
bool WaitForCommittedCheckpoint(const TidalRun& run) {
  return !WaitForLog(run, std::regex(R"(checkpoint \S+ committed \(step (\d+)\))"), 90).empty();
}

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

class RunFaultsTest : public tidal::testing::RunFixture {
 protected:
  RunFaultsTest() : RunFixture("faults", kTinyRecipe) {}
  // Builds tests/envs/plugins/<source> into the test's directory, as users build plugins.
  std::string Plugin(const std::string& source) {
    const std::string out = (root_ / ("lib" + fs::path(source).stem().string() + ".so")).string();
    const std::string cmd = "cc -std=c11 -shared -fPIC -O1 -I" TIDAL_SOURCE_DIR "/envs/include " TIDAL_SOURCE_DIR
                            "/tests/envs/plugins/" + source + " -o " + out + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return out;
  }
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

// Row "prompts longer than the model length": every 4th prompt is 5000 bytes (the model from
// model.size has 4096 positions). Each is refused with a reason naming the length, its prompt
// dropped and counted; the warm-up and the run go on with the others and finish.
TEST_F(RunFaultsTest, PromptsLongerThanTheModelAreDroppedAndTheRunFinishes) {
  const std::string so = Plugin("long_prompts.c");
  TidalRun run(recipe_, root_ / "run", {"env.plugin=" + so, "env.args={every: 4}"});
  ASSERT_EQ(run.Wait(120), 0) << run.Output();
  json s = run.Summary();
  ExpectNoneUnaccounted(s);
  EXPECT_EQ(s["steps"], 4);
  EXPECT_GT(s["prompts"]["dropped_by_reason"].value("rollout_error", 0), 0) << s.dump(2);
  EXPECT_GT(s["faults"]["env_errors"].get<int64_t>(), 0) << s.dump(2);
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

// Row "a stranger claims a rank": a process that was not launched for this run registers for a
// live rank (with a made-up token), and another connects under the live worker's own name. Both
// are refused (the first answered PermissionDenied and logged, the second's connection refused);
// the real worker keeps its rank and the run finishes normally.
TEST_F(RunFaultsTest, ImpostorRegistrationsAreRefusedAndTheRunFinishes) {
  // Long enough that the impostors arrive while the run is going.
  TidalRun run(recipe_, root_ / "run", {"train.steps=30"});
  const std::string endpoint = WaitForLog(run, std::regex(R"(control plane on (tcp://\S+))"), 60);
  ASSERT_FALSE(endpoint.empty()) << run.Output();
  const std::string real = WaitForLog(run, std::regex(R"(device 1 registered as (\S+))"), 60);
  ASSERT_FALSE(real.empty()) << run.Output();
  tidal::Register reg;
  reg.role = "worker";
  reg.rank = 1;
  reg.pid = 4242;
  reg.info = {{"token", std::string(32, 'a')}};
  for (const std::string& name : {std::string("worker-1-4242"), real}) {
    tidal::DealerOptions o;
    o.endpoint = endpoint;
    o.name = name;
    auto dealer = tidal::Dealer::Connect(o);
    ASSERT_TRUE(dealer.ok()) << dealer.status();
    absl::StatusOr<tidal::Envelope> reply = (*dealer)->Request(reg, absl::Seconds(3));
    EXPECT_FALSE(reply.ok()) << name << " was given a WorkerSetup";
    if (name != real) {
      EXPECT_EQ(reply.status().code(), absl::StatusCode::kPermissionDenied) << reply.status();
    }
  }
  ASSERT_EQ(run.Wait(120), 0) << run.Output();
  json s = run.Summary();
  ExpectNoneUnaccounted(s);
  EXPECT_EQ(s["steps"], 30);
  EXPECT_GE(s["faults"]["registers_refused"].get<int64_t>(), 1) << s.dump(2);
  EXPECT_EQ(s["devices"][1]["restarts"], 0) << "the real worker lost its rank";
  const std::string log = ReadFile(run.dir() / "logs" / "controller.log");
  EXPECT_NE(log.find("refused a Register for rank 1 from peer 'worker-1-4242'"), std::string::npos) << log;
}

// Row "an environment whose every call fails": each prompt fails with a reason; after
// control.budget.env_errors in a row the run stops with one error naming the key and the cause.
TEST_F(RunFaultsTest, AnEnvironmentThatAlwaysFailsStopsAtTheBudget) {
  const std::string so = Plugin("bad_reward.c");
  TidalRun run(recipe_, root_ / "run",
               {"env.plugin=" + so, "env.args={bad: huge, every: 1}", "control.budget.env_errors=12"});
  const int rc = run.Wait(120);
  EXPECT_NE(rc, 0);
  ASSERT_NE(rc, -1) << "the run did not stop: " << run.Output();
  const std::string out = run.Output();
  EXPECT_NE(out.find("env_errors: 12 prompts in a row failed"), std::string::npos) << out;
  EXPECT_NE(out.find("control.budget.env_errors = 12"), std::string::npos) << out;
  EXPECT_NE(out.find("outside env.reward_range"), std::string::npos) << out;
  ExpectNoneUnaccounted(run.Summary());
}

// Row "a plugin's reset() hangs / segfaults": the environment runs isolated (the default) and on
// the controller's task thread, so the hung or crashed env-worker is killed and restarted, its
// prompt is dropped with a reason naming the plugin, and the run finishes.
TEST_F(RunFaultsTest, HungOrCrashingResetFailsItsPromptNotTheRun) {
  const std::string so = Plugin("misbehave.c");
  for (const char* mode : {"hang", "segv"}) {
    TidalRun run(recipe_, root_ / mode,
                 {"env.plugin=" + so, absl::StrCat("env.args={mode: ", mode, ", at: reset, every: 6}"),
                  "env.timeout_s=1", "warmup.sft.steps=0", "train.steps=3"});
    ASSERT_EQ(run.Wait(150), 0) << mode << "\n" << run.Output();
    json s = run.Summary();
    ExpectNoneUnaccounted(s);
    EXPECT_GT(s["prompts"]["dropped_by_reason"].value("env_reset_failed", 0), 0) << mode << s.dump(2);
    const std::string log = ReadFile(run.dir() / "logs" / "controller.log");
    EXPECT_NE(log.find("env_reset_failed: env plugin '" + so + "'"), std::string::npos) << mode << "\n" << log;
  }
}

// Rows "SIGTERM / SIGINT mid-run": the run stops, checkpoints what it trained, and drops every
// open prompt with reason `stopped`: nothing is unaccounted.
TEST_F(RunFaultsTest, SignalsStopWithACheckpointAndEveryPromptAccounted) {
  for (int sig : {SIGTERM, SIGINT}) {
    TidalRun run(recipe_, root_ / (sig == SIGTERM ? "term" : "int"), {"train.steps=200", "checkpoint.every=1000"});
    ASSERT_TRUE(WaitForSteps(run, 2, 90)) << run.Output();
    ASSERT_EQ(kill(run.pid(), sig), 0);
    const int rc = run.Wait(90);
    ASSERT_NE(rc, -1) << "the run did not stop: " << run.Output();
    json s = run.Summary();
    ExpectNoneUnaccounted(s);
    EXPECT_TRUE(s["stopped_early"].get<bool>());
    // The RL phase so far is reported, not 0 (the pool idles while the train step runs).
    EXPECT_GT(s["rl_idle_fraction"].get<double>(), 0.0) << s.dump(2);
    const int64_t steps = s["steps"].get<int64_t>();
    EXPECT_GE(steps, 2);
    EXPECT_TRUE(fs::exists(run.dir() / "checkpoints" / absl::StrCat("step-", steps) / "controller_state.json"))
        << run.Output();
  }
}

// Row "a train rank dies": the sharded group cannot continue; the run fails naming the rank,
// and every prompt is accounted (dropped with reason `run_failed`).
// Without checkpoints (the tiny recipe writes none) there is nothing to restart from.
TEST_F(RunFaultsTest, TrainRankDeathFailsTheRunWithEveryPromptAccounted) {
  TidalRun run(recipe_, root_ / "run", {"train.steps=200"});
  const std::string pid = TrainRankPid(run);
  ASSERT_FALSE(pid.empty()) << run.Output();
  ASSERT_TRUE(WaitForSteps(run, 2, 90)) << run.Output();
  ASSERT_EQ(kill(std::stoi(pid), SIGKILL), 0);
  const int rc = run.Wait(90);
  EXPECT_NE(rc, 0);
  ASSERT_NE(rc, -1) << run.Output();
  EXPECT_NE(run.Output().find("train rank 0"), std::string::npos) << run.Output();
  EXPECT_NE(run.Output().find("no checkpoint of this run to restart from"), std::string::npos) << run.Output();
  json s = run.Summary();
  ExpectNoneUnaccounted(s);
  EXPECT_GT(s["prompts"]["dropped_by_reason"].value("run_failed", 0), 0) << s.dump(2);
}

// Row "a train rank dies", with checkpoints: the run restarts from its newest checkpoint (every
// worker anew) and finishes all its steps. The failed attempt accounts its open prompts as
// run_failed in summary.attempt-1.json; the finished attempt accounts its own.
TEST_F(RunFaultsTest, TrainRankDeathRestartsTheRunFromItsLastCheckpoint) {
  TidalRun run(recipe_, root_ / "run", {"train.steps=30", "checkpoint.every=2", "checkpoint.keep=2"});
  const std::string pid = TrainRankPid(run);
  ASSERT_FALSE(pid.empty()) << run.Output();
  ASSERT_TRUE(WaitForCommittedCheckpoint(run)) << run.Output();
  ASSERT_EQ(kill(std::stoi(pid), SIGKILL), 0);
  ASSERT_EQ(run.Wait(240), 0) << run.Output();
  const std::string log = ReadFile(run.dir() / "logs" / "controller.log");
  EXPECT_NE(log.find("restarting the run from"), std::string::npos) << log;
  json s = run.Summary();
  EXPECT_EQ(s["train_group_restarts"], 1) << s.dump(2);
  EXPECT_EQ(s["steps"], 30) << s.dump(2);
  ExpectNoneUnaccounted(s);
  json first = json::parse(ReadFile(run.dir() / "summary.attempt-1.json"));
  ExpectNoneUnaccounted(first);
  EXPECT_GT(first["prompts"]["dropped_by_reason"].value("run_failed", 0), 0) << first.dump(2);
}

// Row "a train rank dies" past the budget: with control.budget.restarts = 0 the run stops at
// the first loss, naming the key, though a checkpoint exists.
TEST_F(RunFaultsTest, TrainRankDeathPastTheRestartBudgetStopsTheRun) {
  TidalRun run(recipe_, root_ / "run", {"train.steps=200", "checkpoint.every=2", "control.budget.restarts=0"});
  const std::string pid = TrainRankPid(run);
  ASSERT_FALSE(pid.empty()) << run.Output();
  ASSERT_TRUE(WaitForCommittedCheckpoint(run)) << run.Output();
  ASSERT_EQ(kill(std::stoi(pid), SIGKILL), 0);
  const int rc = run.Wait(90);
  EXPECT_NE(rc, 0);
  ASSERT_NE(rc, -1) << run.Output();
  EXPECT_NE(run.Output().find("restarted from a checkpoint 0 times, the budget (control.budget.restarts = 0)"),
            std::string::npos) << run.Output();
  ExpectNoneUnaccounted(run.Summary());
}

// Row "a worker dies again and again": with control.budget.restarts = 1 the rollout worker is
// restarted once; its second death stops the run with one error naming the key, and every
// prompt (the dead worker's were requeued, then dropped at the stop) is accounted.
TEST_F(RunFaultsTest, AWorkerThatKeepsDyingStopsTheRunAtTheRestartBudget) {
  TidalRun run(recipe_, root_ / "run", {"train.steps=200", "control.budget.restarts=1"});
  const std::string first = WaitForLog(run, std::regex(R"(worker 1 \(cpu:1, rollout\) pid (\d+))"), 60);
  ASSERT_FALSE(first.empty()) << run.Output();
  ASSERT_TRUE(WaitForSteps(run, 1, 90)) << run.Output();
  ASSERT_EQ(kill(std::stoi(first), SIGKILL), 0);
  const std::string second = WaitForLog(run, std::regex(R"(restarted device 1 as pid (\d+))"), 60);
  ASSERT_FALSE(second.empty()) << run.Output();
  ASSERT_EQ(kill(std::stoi(second), SIGKILL), 0);
  const int rc = run.Wait(90);
  EXPECT_NE(rc, 0);
  ASSERT_NE(rc, -1) << "the run did not stop: " << run.Output();
  const std::string out = run.Output();
  EXPECT_NE(out.find("device 1 died 2 times; giving up (control.budget.restarts = 1)"), std::string::npos) << out;
  const std::string log = ReadFile(run.dir() / "logs" / "controller.log");
  EXPECT_EQ(log.find("restarted device 1 as pid " + second + "\n"), log.rfind("restarted device 1 as pid"))
      << "restarted past the budget: " << log;
  ExpectNoneUnaccounted(run.Summary());
}

// Row "a weight version a device rejects": version 3 (the first RL update, after two warm-up
// versions) reaches the rollout device corrupted; on-policy rollout (max_staleness 0) cannot go on
// without it. The controller re-sends its intact copy, the device starts that version over and
// applies it, and the run finishes with only the prompts in flight at the time dropped as stale. (Before the device restarted a
// rejected version on its resend, the run dropped 2,000 stale prompts and stopped at
// control.budget.drops.)
TEST_F(RunFaultsTest, ARejectedWeightVersionIsHealedByItsResend) {
  TidalRun run(recipe_, root_ / "run", {"pool.policy=static", "rollout.max_staleness=0", "control.budget.weight_resends=2"},
               {{"TIDAL_FAULT_CORRUPT_BUCKET", "3"}});
  ASSERT_EQ(run.Wait(120), 0) << run.Output();
  auto rejected = run.Events("weight_rejected");
  ASSERT_EQ(rejected.size(), 1u) << run.Output();
  EXPECT_EQ(rejected[0]["version"], 3);
  EXPECT_NE(rejected[0]["error"].get<std::string>().find("checksum mismatch"), std::string::npos);
  json s = run.Summary();
  ExpectNoneUnaccounted(s);
  EXPECT_EQ(s["steps"], 4);
  // Only what was in flight on version 2 when version 3 came is stale (a step's worth or two).
  EXPECT_LE(s["prompts"]["dropped_by_reason"].value("stale", 0), 8) << s.dump(2);
}

// Row "a weight version no device can take": version 3 arrives corrupted every time, resends
// included; on-policy rollout cannot go on without it. The controller re-sends it up to
// control.budget.weight_resends times, then stops the run with one error naming the key, and
// every prompt is accounted.
TEST_F(RunFaultsTest, AVersionThatNeverGetsThroughStopsAtTheResendBudget) {
  TidalRun run(recipe_, root_ / "run", {"pool.policy=static", "rollout.max_staleness=0", "control.budget.weight_resends=2"},
               {{"TIDAL_FAULT_CORRUPT_BUCKET", "3:always"}});
  const int rc = run.Wait(120);
  EXPECT_NE(rc, 0);
  ASSERT_NE(rc, -1) << "the run did not stop: " << run.Output();
  const std::string out = run.Output();
  EXPECT_NE(out.find("control.budget.weight_resends"), std::string::npos) << out;
  EXPECT_NE(out.find("checksum mismatch"), std::string::npos) << out;
  // The budget allows 2 failures; the third rejection stops the run (3 rejections, 2 resends).
  EXPECT_EQ(run.Events("weight_rejected").size(), 2u) << out;
  ExpectNoneUnaccounted(run.Summary());
}

}  // namespace
