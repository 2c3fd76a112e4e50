// End-to-end on a real Slurm cluster: tests/tools/slurm_netns_cluster.sh starts slurmctld and two
// slurmd "nodes" in network namespaces of their own (addresses only inside them). `tidal run
// --launcher slurm` submits an sbatch job from the controller's namespace; inside the allocation
// the controller binds 0.0.0.0 (CURVE on) and starts each worker with srun on whichever node has
// room; the workers dial it over the namespaces' bridge. Mid-run the test kills one rollout
// worker's job step (scancel --signal=KILL), and the run must requeue, restart and finish with
// every prompt accounted. Two tasks per node (one of them the controller's) make the three
// workers spread over both nodes.
//
// Needs root, iproute2, slurm-wlm and munge (tools/install_deps.sh); skips with a message
// without them.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/remove_tree.h"
#include "tests/tools/tidal_process.h"

namespace tidal {
namespace {

using testing_util::ReadEvents;
using testing_util::ReadText;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kRecipe[] = R"(
name: slurm-e2e
seed: 5
model: {arch: qwen2, size: {hidden: 32, layers: 1, heads: 2, kv_heads: 1}, tokenizer: byte}
warmup: {sft: {steps: 2, lr: 3.0e-3, batch_size: 8}}
pool: {devices: "cpu:3", tags: {rollout: 2, train: 1}, policy: static}
rollout: {group_size: 4, max_new_tokens: 8, max_staleness: 1, max_seqs: 16}
env: {plugin: "builtin:letter_count", args: {min_len: 3, max_len: 6}, eval_prompts: 4}
train: {lr: 1.0e-3, steps: 16, prompts_per_step: 4}
metrics: {port: 0}
control: {heartbeat_ms: 250, heartbeat_miss: 20, bind: 0.0.0.0}
launch: slurm
slurm: {nodes: 2, sbatch_args: "--ntasks-per-node=2"}
)";

const std::string kCluster = std::string(TIDAL_SOURCE_DIR) + "/tests/tools/slurm_netns_cluster.sh";

std::string Sh(const std::string& cmd, int* code = nullptr) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return "";
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int status = pclose(p);
  if (code != nullptr) *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

bool Have(const char* tool) { return Sh(std::string("command -v ") + tool + " >/dev/null && echo yes") == "yes\n"; }

class SlurmE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, slurmd)";
    for (const char* t : {"ip", "nsenter", "slurmctld", "slurmd", "srun", "sbatch", "munged"}) {
      if (!Have(t)) GTEST_SKIP() << t << " not installed (tools/install_deps.sh installs slurm-wlm and munge)";
    }
    // Short: the cluster's socket paths live under it (munge's is limited to ~100 characters).
    char tmpl[] = "/tmp/tidal_slurm_XXXXXX";
    dir_ = mkdtemp(tmpl);
    int code = -1;
    std::string out = Sh(kCluster + " up " + dir_ + " 2 3", &code);
    ASSERT_EQ(code, 0) << out;
    up_ = true;
  }
  void TearDown() override {
    if (up_) Sh(kCluster + " down " + dir_);
    if (!dir_.empty() && !HasFailure()) (void)RemoveTree(dir_);
  }
  std::string Slurm(const std::string& cmd, int* code = nullptr) {
    return Sh(kCluster + " exec " + dir_ + " " + cmd, code);
  }
  std::string dir_;
  bool up_ = false;
};

TEST_F(SlurmE2eTest, WorkersRunAsSrunStepsOverCurveAndSurviveAKilledStep) {
  const std::string recipe = dir_ + "/recipe.yaml", run_dir = dir_ + "/run";
  std::ofstream(recipe) << kRecipe;
  // Outside an allocation: `tidal run` writes the sbatch script and submits it.
  int code = -1;
  std::string submit = Slurm(std::string(TIDAL_BIN) + " run " + recipe + " run_dir=" + run_dir, &code);
  ASSERT_EQ(code, 0) << submit;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(submit, m, std::regex(R"(submitted Slurm job (\d+))"))) << submit;
  const std::string job = m[1].str();
  EXPECT_TRUE(std::filesystem::exists(run_dir + "/slurm/tidal.sbatch"));

  // Once RL runs, find the job steps and kill a rollout worker's step, on a node other than the
  // controller's when there is one.
  auto deadline = Clock::now() + std::chrono::seconds(240);
  std::string victim_step, victim_node, steps;
  std::set<std::string> worker_nodes;
  while (Clock::now() < deadline && victim_step.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    if (ReadEvents(run_dir, "step").size() < 2) {
      if (Slurm("squeue -h -j " + job + " -o %T").empty()) break;  // the job ended early
      continue;
    }
    steps = Slurm("squeue -h -s -j " + job + " -o '%i|%j|%N'");
    std::string batch_node = Slurm("squeue -h -j " + job + " -o %B");
    batch_node = batch_node.substr(0, batch_node.find('\n'));
    std::regex line(R"((\d+\.\d+)\|tidal-worker-(\d+)\|(\S+))");
    for (auto it = std::sregex_iterator(steps.begin(), steps.end(), line); it != std::sregex_iterator(); ++it) {
      worker_nodes.insert((*it)[3].str());
      if ((*it)[2] == "0") continue;  // device 0 is the train rank
      if (victim_step.empty() || (*it)[3] != batch_node) {
        victim_step = (*it)[1].str();
        victim_node = (*it)[3].str();
      }
    }
  }
  ASSERT_FALSE(victim_step.empty()) << "no worker step found; squeue: " << steps << "\n"
                                    << ReadText(run_dir + "/logs/controller.log")
                                    << ReadText(run_dir + "/logs/slurm-" + job + ".out");
  EXPECT_EQ(worker_nodes.size(), 2u) << "the workers should spread over both nodes: " << steps;
  std::string cancel = Slurm("scancel --signal=KILL " + victim_step, &code);
  ASSERT_EQ(code, 0) << "scancel " << victim_step << " (on " << victim_node << "): " << cancel;

  // The job ends by itself when the run is over.
  while (Clock::now() < deadline && !Slurm("squeue -h -j " + job + " -o %T").empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  const std::string out = ReadText(run_dir + "/logs/slurm-" + job + ".out");
  const std::string log = ReadText(run_dir + "/logs/controller.log");
  json s = json::parse(ReadText(run_dir + "/summary.json"), nullptr, false);
  ASSERT_TRUE(s.is_object()) << out << log;
  EXPECT_EQ(s["steps"], 16) << s.dump(2);
  EXPECT_EQ(s["prompts"]["unaccounted"], 0) << s.dump(2);
  EXPECT_EQ(s["prompts"]["created"].get<int64_t>(),
            s["prompts"]["trained"].get<int64_t>() + s["prompts"]["dropped"].get<int64_t>());
  EXPECT_GE(s["worker_restarts"].get<int64_t>(), 1) << s.dump(2);
  auto died = ReadEvents(run_dir, "worker_died");
  ASSERT_FALSE(died.empty()) << log;
  EXPECT_NE(died[0]["device"], 0);
  // The control plane was off loopback and encrypted; the workers dialed a namespace address.
  json control = json::parse(ReadText(run_dir + "/control.json"), nullptr, false);
  ASSERT_TRUE(control.is_object());
  EXPECT_TRUE(control["curve"].get<bool>());
  EXPECT_EQ(control["launch"], "slurm");
  EXPECT_NE(control["endpoint"].get<std::string>().find("tcp://10.77.0."), std::string::npos) << control.dump();
  EXPECT_EQ(log.find("refused"), std::string::npos) << log;  // every real worker got in
}

}  // namespace
}  // namespace tidal
