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

}  // namespace
