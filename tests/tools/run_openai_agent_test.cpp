// Issue 7's endpoint promise, end to end: an agent written with the official `openai` Python
// client drives the policy served by the rollout workers of a real `tidal run`, reports one
// reward per session, and the recorded sessions become the run's train batches (real worker
// processes, real HTTP and ZeroMQ on loopback).
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/core/temp_dir.h"

namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool HavePythonClient() {
  return fs::exists(TIDAL_PYTHON) &&
         std::system((std::string(TIDAL_PYTHON) + " -c 'import openai' > /dev/null 2>&1").c_str()) == 0;
}

TEST(RunOpenAIAgentTest, AgentSessionsBecomeTrainBatches) {
  if (!HavePythonClient()) GTEST_SKIP() << "no python with the openai package at " << TIDAL_PYTHON;
  const fs::path dir = fs::path(TIDAL_BINARY_DIR) / "e2e" / "openai_agent";
  tidal::testing_util::RemoveTree(dir.string());
  fs::create_directories(dir);
  const fs::path run_dir = dir / "run";
  const std::string src = TIDAL_SOURCE_DIR;
  // 3 steps of 4 groups of 4 sessions; the agent runs until the run ends.
  const std::string run = std::string("timeout 600 ") + TIDAL_BIN + " run " + src +
                          "/recipes/openai_agent.yaml run_dir=" + run_dir.string() +
                          " warmup.sft.steps=5 train.steps=3 train.prompts_per_step=4"
                          " rollout.group_size=4 env.eval_prompts=8 checkpoint.every=0";
  const std::string agent = std::string("timeout 600 ") + TIDAL_PYTHON + " " + src +
                            "/tools/agents/letter_count_agent.py --run-dir " + run_dir.string() +
                            " --group-size 4 --parallel-tasks 4 --two-turn-fraction 0.5 --wait 300";
  const std::string script = run + " > " + (dir / "run.out").string() + " 2>&1 & tp=$!; " + agent +
                             " > " + (dir / "agent.out").string() + " 2>&1; a=$?; wait $tp; echo $? $a > " +
                             (dir / "rc").string();
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
  const std::string run_out = ReadFile(dir / "run.out");
  const std::string agent_out = ReadFile(dir / "agent.out");
  ASSERT_EQ(ReadFile(dir / "rc"), "0 0\n") << run_out << "\n--- agent:\n" << agent_out;

  auto summary = nlohmann::json::parse(ReadFile(run_dir / "summary.json"));
  EXPECT_EQ(summary["steps"], 3);
  EXPECT_EQ(summary["prompts"]["unaccounted"], 0) << summary.dump(2);
  EXPECT_EQ(summary["prompts"]["trained"], 3 * 4) << summary.dump(2);
  EXPECT_GE(summary["agent"]["sessions"].get<int64_t>(), 3 * 4 * 4) << summary.dump(2);
  EXPECT_TRUE(fs::exists(run_dir / "final" / "model.safetensors"));

  auto endpoints = nlohmann::json::parse(ReadFile(run_dir / "openai_endpoints.json"));
  EXPECT_EQ(endpoints["endpoints"].size(), 2u) << endpoints.dump();  // elastic: both host engines

  // The agent's own report (its last line): sessions ran, some of them over two calls.
  const auto last = agent_out.find_last_of('{');
  ASSERT_NE(last, std::string::npos) << agent_out;
  auto stats = nlohmann::json::parse(agent_out.substr(last));
  EXPECT_GE(stats["sessions"].get<int64_t>(), 3 * 4 * 4) << agent_out;
  EXPECT_GT(stats["calls"].get<int64_t>(), stats["sessions"].get<int64_t>()) << agent_out;

  // Every trained step was made of agent sessions: the trainer saw their tokens.
  std::ifstream events(run_dir / "metrics.jsonl");
  int steps = 0;
  for (std::string line; std::getline(events, line);) {
    auto e = nlohmann::json::parse(line, nullptr, false);
    if (e.is_object() && e.value("event", "") == "step") ++steps;
  }
  EXPECT_EQ(steps, 3);
}

// sessions_only with no agent: the run ends with a clear error instead of waiting forever.
TEST(RunOpenAIAgentTest, NoAgentEndsTheRunWithAClearError) {
  const fs::path dir = fs::path(TIDAL_BINARY_DIR) / "e2e" / "openai_no_agent";
  tidal::testing_util::RemoveTree(dir.string());
  fs::create_directories(dir);
  const std::string cmd = std::string("timeout 300 ") + TIDAL_BIN + " run " + TIDAL_SOURCE_DIR +
                          "/recipes/openai_agent.yaml run_dir=" + (dir / "run").string() +
                          " warmup.sft.steps=0 train.steps=2 env.eval_prompts=4 openai.idle_timeout_s=2 > " +
                          (dir / "run.out").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string out = ReadFile(dir / "run.out");
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("no agent session finished in 2 s"), std::string::npos) << out;
  EXPECT_NE(out.find("openai_endpoints.json"), std::string::npos) << out;
  EXPECT_NE(out.find("unaccounted 0"), std::string::npos) << out;
}

}  // namespace
