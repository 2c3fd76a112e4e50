// End-to-end: a real `tidal run` with CURVE and registration tokens on, and spoofed workers that
// try to join it while it runs. Every one must be refused (and the refusal logged) while the run
// itself finishes with every prompt accounted.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/remove_tree.h"
#include "scheduler/worker_auth.h"
#include "tests/tools/tidal_process.h"

namespace tidal {
namespace {

using testing_util::Process;
using testing_util::ReadEvents;
using testing_util::ReadText;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kRecipe[] = R"(
name: auth
seed: 3
model: {arch: qwen2, size: {hidden: 32, layers: 1, heads: 2, kv_heads: 1}, tokenizer: byte}
warmup: {sft: {steps: 2, lr: 3.0e-3, batch_size: 8}}
pool: {devices: "cpu:2", tags: {rollout: 1, train: 1}, policy: static}
rollout: {group_size: 4, max_new_tokens: 8, max_staleness: 1, max_seqs: 16}
env: {plugin: "builtin:letter_count", args: {min_len: 3, max_len: 6}, eval_prompts: 4}
train: {lr: 1.0e-3, steps: 60, prompts_per_step: 4}
metrics: {port: 0}
control: {heartbeat_ms: 200, heartbeat_miss: 15, curve: on}
)";

// The token a live worker process holds (root or same user reads /proc/PID/environ).
std::string TokenOf(pid_t pid) {
  std::string env = ReadText("/proc/" + std::to_string(pid) + "/environ");
  const std::string key = "TIDAL_WORKER_TOKEN=";
  size_t at = env.find(key);
  if (at == std::string::npos) return "";
  size_t end = env.find('\0', at);
  return env.substr(at + key.size(), end - at - key.size());
}

TEST(RunAuthE2eTest, SpoofedAndReplayedWorkersAreRefusedAndTheRunIsUnharmed) {
  namespace fs = std::filesystem;
  const std::string root = std::string(TIDAL_BINARY_DIR) + "/e2e/auth";
  (void)RemoveTree(root);
  fs::create_directories(root);
  const std::string recipe = root + "/auth.yaml", run_dir = root + "/run";
  std::ofstream(recipe) << kRecipe;
  Process run({TIDAL_BIN, "run", recipe, "run_dir=" + run_dir, "--quiet"}, root + "/run.out");

  // Wait until both real workers are ready and RL runs.
  json control;
  pid_t real_rollout = -1;
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline && (real_rollout < 0 || ReadEvents(run_dir, "step").empty())) {
    control = json::parse(ReadText(run_dir + "/control.json"), nullptr, false);
    std::smatch m;
    std::string log = ReadText(run_dir + "/logs/controller.log");
    static const std::regex re(R"(worker 1 \(cpu:1, rollout\) pid (\d+))");
    if (std::regex_search(log, m, re)) real_rollout = std::stoi(m[1]);
    ASSERT_EQ(run.Wait(0.1), -1) << "the run ended early:\n" << run.Output();
  }
  ASSERT_GT(real_rollout, 0) << run.Output();
  ASSERT_TRUE(control.is_object());
  EXPECT_TRUE(control["curve"].get<bool>());
  const std::string endpoint = control["endpoint"].get<std::string>();
  const std::string creds = control["worker_credentials"].get<std::string>();
  struct stat st;
  ASSERT_EQ(stat(creds.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // the workers' credentials are private
  const std::string replayed = TokenOf(real_rollout);
  ASSERT_FALSE(replayed.empty());

  // Wrong CURVE keys: a key pair of its own and the real server key.
  absl::StatusOr<scheduler::RunCredentials> intruder = scheduler::RunCredentials::Generate();
  ASSERT_TRUE(intruder.ok());
  intruder->server.public_key = control["server_public"].get<std::string>();
  const std::string intruder_file = root + "/intruder.json";
  ASSERT_TRUE(intruder->Save(intruder_file, scheduler::RunCredentials::Scope::kWorker).ok());

  const std::vector<std::string> worker = {TIDAL_BIN, "worker", "--controller", endpoint, "--device", "cpu:1",
                                           "--rank", "1", "--heartbeat-ms", "200", "--heartbeat-miss", "10"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = worker;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const std::vector<std::string> no_token_env = {"TIDAL_WORKER_TOKEN", "TIDAL_CREDENTIALS"};
  // 1. no CURVE at all; 2. CURVE with keys the run never admitted; 3. the run's own credentials
  // (stolen) but no token; 4. the run's credentials and a replay of the live worker's token.
  Process plain(worker, root + "/spoof-plain.out", {}, no_token_env);
  Process wrong_keys(with({"--credentials", intruder_file}), root + "/spoof-keys.out", {}, no_token_env);
  Process no_token(with({"--credentials", creds}), root + "/spoof-notoken.out", {}, no_token_env);
  Process replay(with({"--credentials", creds}), root + "/spoof-replay.out", {{"TIDAL_WORKER_TOKEN", replayed}});

  // Each spoofer fails: refused at registration, or (no CURVE handshake) the controller never
  // answers and the worker gives up when its heartbeats go unanswered.
  EXPECT_GT(no_token.Wait(60), 0) << no_token.Output();
  EXPECT_GT(replay.Wait(60), 0) << replay.Output();
  EXPECT_GT(plain.Wait(60), 0) << plain.Output();
  EXPECT_GT(wrong_keys.Wait(60), 0) << wrong_keys.Output();
  EXPECT_NE(no_token.Output().find("no registration token"), std::string::npos) << no_token.Output();
  EXPECT_NE(replay.Output().find("already used"), std::string::npos) << replay.Output();

  ASSERT_EQ(run.Wait(240), 0) << run.Output();
  const std::string log = ReadText(run_dir + "/logs/controller.log");
  EXPECT_NE(log.find("refused a Register for rank 1"), std::string::npos) << log;
  EXPECT_NE(log.find("refused a CURVE connection"), std::string::npos) << log;  // the ZAP handler
  auto refused = ReadEvents(run_dir, "registration_refused");
  ASSERT_EQ(refused.size(), 2u);
  // Nothing a spoofer did reached the real workers or the accounting.
  json s = json::parse(ReadText(run_dir + "/summary.json"), nullptr, false);
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["prompts"]["unaccounted"], 0) << s.dump(2);
  EXPECT_EQ(s["steps"], 60);
  EXPECT_EQ(s["worker_restarts"], 0) << s.dump(2);
  EXPECT_TRUE(ReadEvents(run_dir, "worker_died").empty());
}

}  // namespace
}  // namespace tidal
