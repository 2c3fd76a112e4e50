#include "envs/builtins/task_sampling.h"

#include <gtest/gtest.h>

#include <string>

namespace tidal::envs::builtins {
namespace {

// Rng is the reference SplitMix64 generator started at seed ^ golden ratio: seeding with the
// golden ratio itself gives the published stream for state 0 (Vigna's splitmix64.c), so every
// task a seeded built-in draws stays the same across refactors and platforms.
TEST(TaskSamplingTest, RngIsTheReferenceSplitMix64Stream) {
  Rng rng(0x9e3779b97f4a7c15ULL);
  EXPECT_EQ(rng.Next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(rng.Next(), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(rng.Next(), 0x06c45d188009454fULL);
  EXPECT_EQ(rng.Next(), 0xf88bb8a8724c81ecULL);
}

TEST(TaskSamplingTest, RngHelpersStayInRange) {
  Rng rng(42);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_LT(rng.Below(7), 7u);
    const int64_t r = rng.Range(-3, 3);
    EXPECT_GE(r, -3);
    EXPECT_LE(r, 3);
    const double u = rng.Uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
  Rng a(7), b(7), c(8);
  const uint64_t first = a.Next();
  EXPECT_EQ(first, b.Next());
  EXPECT_NE(first, c.Next());
}

TEST(TaskSamplingTest, SplitsArePartitionedByKey) {
  int eval = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string key = "task-" + std::to_string(i);
    const bool in_eval = InEvalSplit(key, 0.25);
    EXPECT_EQ(in_eval, InEvalSplit(key, 0.25));  // a function of the key alone
    eval += in_eval;
  }
  EXPECT_GT(eval, 400);
  EXPECT_LT(eval, 600);
  EXPECT_FALSE(InEvalSplit("anything", 0.0));
}

TEST(TaskSamplingTest, SampleInSplitReturnsOnlyTasksOfTheSplit) {
  auto draw = [](Rng& rng) {
    const std::string key = "k" + std::to_string(rng.Below(1000));
    return std::pair<std::string, std::string>{key, key};
  };
  for (uint64_t seed = 0; seed < 50; ++seed) {
    EXPECT_TRUE(InEvalSplit(SampleInSplit(seed, Split::kEval, 0.3, "t", draw), 0.3));
    EXPECT_FALSE(InEvalSplit(SampleInSplit(seed, Split::kTrain, 0.3, "t", draw), 0.3));
  }
  EXPECT_THROW(SampleInSplit(1, Split::kEval, 0.0, "t", draw), EnvError);
}

}  // namespace
}  // namespace tidal::envs::builtins
