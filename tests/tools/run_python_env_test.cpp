// A real run whose environment is a Python file (recipes/examples/python_letter_count.yaml,
// envs/examples/python_reward/letter_count.py): the controller, rollout workers and env workers
// score through the embedded-CPython bridge, the run trains and accounts for every prompt.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/remove_tree.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(RunPythonEnvTest, ShortRunTrainsOnAPythonReward) {
  const fs::path dir = fs::path(TIDAL_BINARY_DIR) / "e2e" / "python_env";
  (void)tidal::RemoveTree(dir.string());
  fs::create_directories(dir.parent_path());
  // Run from another folder: the recipe's relative plugin path must resolve from the recipe.
  const std::string cmd = "cd / && timeout 300 " + std::string(TIDAL_BIN) + " run " + TIDAL_SOURCE_DIR +
                          "/recipes/examples/python_letter_count.yaml run_dir=" + dir.string() +
                          " warmup.sft.steps=10 train.steps=6 train.prompts_per_step=8 env.eval_prompts=16"
                          " checkpoint.every=0 metrics.port=0 --quiet > " + dir.string() + ".out 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string out = ReadFile(dir.string() + ".out");
  ASSERT_EQ(rc, 0) << out;
  json s = json::parse(ReadFile(dir / "summary.json"), nullptr, false);
  ASSERT_TRUE(s.is_object()) << out;
  EXPECT_EQ(s["steps"], 6);
  EXPECT_EQ(s["prompts"]["unaccounted"], 0) << s.dump(2);
  EXPECT_EQ(s["prompts"]["trained"].get<int64_t>() + s["prompts"]["dropped"].get<int64_t>(),
            s["prompts"]["created"].get<int64_t>());
  // Rewards came from Python: some sampled answers were right after the warm-up.
  double best = 0;
  std::ifstream events(dir / "metrics.jsonl");
  for (std::string line; std::getline(events, line);) {
    json e = json::parse(line, nullptr, false);
    if (e.value("event", "") == "step") best = std::max(best, e.value("reward", 0.0));
  }
  EXPECT_GT(best, 0.0) << ReadFile(dir / "metrics.jsonl");
  const std::string resolved = ReadFile(dir / "recipe.yaml");
  EXPECT_NE(resolved.find(std::string("python:") + TIDAL_SOURCE_DIR + "/envs/examples/python_reward/letter_count.py"),
            std::string::npos) << resolved;
}

// env.multi_turn: the run plays episodes through step(). This environment's score() would give
// -5 and its step() gives a reward only on the second turn, after an observation: rewards in
// [0, 1] show that step() drove every sample, over two turns.
TEST(RunPythonEnvTest, MultiTurnRunCallsStep) {
  const fs::path dir = fs::path(TIDAL_BINARY_DIR) / "e2e" / "python_multi_turn";
  (void)tidal::RemoveTree(dir.string());
  fs::create_directories(dir);
  std::ofstream(dir / "two_turns.py") << R"PY(
import zlib
def reset(seed, split, args):
    return {"prompt": "say two things:", "hidden": {"seed": seed}, "reference": " a"}
def score(hidden, response, args):
    return -5.0
def step(task, turn, args):
    task["turns"] = task.get("turns", 0) + 1
    if task["turns"] == 1:
        return {"observation": " then?", "reward": 0.0, "done": False, "observation_role": "user"}
    ok = zlib.crc32(turn.encode()) % 2 == 0
    return {"reward": 1.0 if ok else 0.0, "done": True, "info": {"correct": ok}}
)PY";
  std::ofstream(dir / "recipe.yaml") << R"(name: multi-turn
model: {arch: qwen2, size: {hidden: 32, layers: 1, heads: 2, kv_heads: 1}, tokenizer: byte}
pool: {devices: "cpu:2", tags: {rollout: 1, train: 1}, policy: elastic}
rollout: {group_size: 4, max_new_tokens: 6, temperature: 1.0, max_staleness: 1, max_seqs: 32}
env: {plugin: "python:two_turns.py", multi_turn: true, max_turns: 3, eval_prompts: 4}
train: {lr: 1.0e-3, steps: 3, prompts_per_step: 4}
checkpoint: {every: 0}
metrics: {port: 0}
)";
  const std::string cmd = "timeout 300 " + std::string(TIDAL_BIN) + " run " + (dir / "recipe.yaml").string() +
                          " run_dir=" + (dir / "run").string() + " --quiet > " + (dir / "run.out").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string out = ReadFile(dir / "run.out");
  ASSERT_EQ(rc, 0) << out;
  int steps = 0;
  std::ifstream events(dir / "run" / "metrics.jsonl");
  for (std::string line; std::getline(events, line);) {
    json e = json::parse(line, nullptr, false);
    if (e.value("event", "") != "step") continue;
    ++steps;
    EXPECT_GE(e.value("reward", -1.0), 0.0) << line;
    EXPECT_LE(e.value("reward", -1.0), 1.0) << line;
  }
  EXPECT_EQ(steps, 3) << out;
}

}  // namespace
