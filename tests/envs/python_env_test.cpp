// Environments written in Python (env.plugin: python:FILE): the embedded-CPython bridge
// (envs/plugins/python_env.cpp) in an env-worker process runs the user's reset / score / step,
// and a Python error becomes the call's error with its traceback.
#include <gtest/gtest.h>

#include <fstream>

#include "envs/environment.h"
#include "tests/envs/plugin_build.h"

namespace tidal::envs {
namespace {

using nlohmann::json;

class PythonEnvTest : public ::testing::Test {
 protected:
  // Writes `source` as a .py file in the test's scratch dir and opens it.
  absl::StatusOr<std::unique_ptr<Environment>> Open(const std::string& name, const std::string& source,
                                                    json args = json::object()) {
    const std::string path = testing::PluginBuildDir() + "/" + name + ".py";
    std::ofstream(path) << source;
    EnvSpec spec{.plugin = "python:" + path, .args = args};
    return Environment::Open(spec);
  }
};

constexpr char kCounter[] = R"PY(
import random
def reset(seed, split, args):
    rng = random.Random(seed * 2 + (split == "eval"))
    n = rng.randint(1, args.get("max", 9))
    return {"prompt": "say %d:" % n, "hidden": {"n": n}, "reference": " %d" % n,
            "messages": [{"role": "user", "content": "say %d" % n}]}
def score(hidden, response, args):
    ok = response.strip() == str(hidden["n"])
    return {"reward": 1.0 if ok else 0.0, "info": {"correct": ok, "seen": response}}
)PY";

TEST_F(PythonEnvTest, ResetScoreAndSingleTurnStep) {
  auto env = Open("counter", kCounter, {{"max", 5}});
  ASSERT_TRUE(env.ok()) << env.status();
  for (uint64_t seed = 0; seed < 5; ++seed) {
    auto task = (*env)->Reset(seed, Split::kTrain);
    ASSERT_TRUE(task.ok()) << task.status();
    const int n = task->hidden["n"];
    EXPECT_GE(n, 1);
    EXPECT_LE(n, 5);
    EXPECT_EQ(task->prompt, "say " + std::to_string(n) + ":");
    ASSERT_TRUE(task->messages.has_value());
    auto good = (*env)->Score(*task, *task->reference);
    ASSERT_TRUE(good.ok()) << good.status();
    EXPECT_EQ(good->reward, 1.0);
    EXPECT_EQ(good->info["correct"], true);
    auto bad = (*env)->Score(task->hidden, " é nope");  // non-ASCII text crosses intact
    ASSERT_TRUE(bad.ok());
    EXPECT_EQ(bad->reward, 0.0);
    EXPECT_EQ(bad->info["seen"], " é nope");
    // No step(): one turn, scored, done.
    auto step = (*env)->Step(*task->reference);
    ASSERT_TRUE(step.ok()) << step.status();
    EXPECT_TRUE(step->done);
    EXPECT_EQ(step->reward, 1.0);
  }
  // Same seed, same task, in another instance (another env worker).
  auto twin = Open("counter", kCounter, {{"max", 5}});
  ASSERT_TRUE(twin.ok());
  EXPECT_EQ((*env)->Reset(3)->hidden, (*twin)->Reset(3)->hidden);
}

TEST_F(PythonEnvTest, MultiTurnStepKeepsStateInTheTask) {
  auto env = Open("guess", R"PY(
def reset(seed, split, args):
    return {"prompt": "guess a number 0-9:", "hidden": {"secret": seed % 10}}
def score(hidden, response, args):
    return float(response.strip() == str(hidden["secret"]))
def step(task, turn, args):
    task["tries"] = task.get("tries", 0) + 1
    secret = task["hidden"]["secret"]
    guess = int(turn.strip()) if turn.strip().isdigit() else -1
    if guess == secret:
        return {"observation": "", "reward": 1.0, "done": True}
    done = task["tries"] >= 3
    return {"observation": "higher" if guess < secret else "lower", "reward": 0.0, "done": done,
            "observation_role": "user", "info": {"tries": task["tries"]}}
)PY");
  ASSERT_TRUE(env.ok()) << env.status();
  ASSERT_TRUE((*env)->Reset(7).ok());
  auto s1 = (*env)->Step("3");
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_EQ(s1->observation, "higher");
  EXPECT_FALSE(s1->done);
  auto s2 = (*env)->Step("9");
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->observation, "lower");
  EXPECT_EQ(s2->info["tries"], 2);
  auto s3 = (*env)->Step("7");
  ASSERT_TRUE(s3.ok());
  EXPECT_TRUE(s3->done);
  EXPECT_EQ(s3->reward, 1.0);
  auto plain = (*env)->Score(json{{"secret", 7}}, " 7");  // a bare float reward
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->reward, 1.0);
}

TEST_F(PythonEnvTest, PythonErrorsComeBackWithTheirTraceback) {
  auto missing = Open("no_score", "def reset(seed, split, args):\n    return {}\n");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("defines no function score"), std::string::npos)
      << missing.status();

  auto syntax = Open("syntax", "def reset(seed, split, args)\n    return {}\n");
  ASSERT_FALSE(syntax.ok());
  EXPECT_NE(std::string(syntax.status().message()).find("SyntaxError"), std::string::npos) << syntax.status();

  auto bad_args = Open("args", R"PY(
def reset(seed, split, args):
    return {"prompt": "p", "hidden": 1}
def score(hidden, response, args):
    raise ZeroDivisionError("reward exploded")
if False:
    pass
)PY");
  ASSERT_TRUE(bad_args.ok()) << bad_args.status();
  auto r = (*bad_args)->Score(json(1), "x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("ZeroDivisionError: reward exploded"), std::string::npos)
      << r.status();
  EXPECT_NE(std::string(r.status().message()).find("args.py\", line 5"), std::string::npos) << r.status();
  // The worker survives a Python exception: the next call works.
  EXPECT_TRUE((*bad_args)->Reset(1).ok());

  auto wrong_type = Open("wrong_type", R"PY(
def reset(seed, split, args):
    return "not a dict"
def score(hidden, response, args):
    return "high"
)PY");
  ASSERT_TRUE(wrong_type.ok());
  auto t = (*wrong_type)->Reset(0);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("reset() returned str"), std::string::npos) << t.status();

  EnvSpec nofile{.plugin = "python:/nonexistent/env.py"};
  auto gone = Environment::Open(nofile);
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(std::string(gone.status().message()).find("Python file not found"), std::string::npos) << gone.status();
}

TEST_F(PythonEnvTest, TheShippedExamplePlaysTheQuickstartTask) {
  EnvSpec spec{.plugin = std::string("python:") + TIDAL_SOURCE_DIR + "/envs/examples/python_reward/letter_count.py",
               .args = {{"min_len", 3}, {"max_len", 8}, {"alphabet", "abcdefghr"}, {"letters", "r"}, {"exact", true}}};
  auto env = Environment::Open(spec);
  ASSERT_TRUE(env.ok()) << env.status();
  for (uint64_t seed = 0; seed < 10; ++seed) {
    auto task = (*env)->Reset(seed, seed % 2 ? Split::kEval : Split::kTrain);
    ASSERT_TRUE(task.ok()) << task.status();
    EXPECT_EQ((*env)->Score(*task, *task->reference)->reward, 1.0) << task->prompt;
    EXPECT_EQ((*env)->Score(*task, " 99")->reward, 0.0);
  }
  spec.args["bogus"] = 1;
  auto bad = Environment::Open(spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("bogus"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace tidal::envs
