#include <gtest/gtest.h>

#include <set>

#include "tests/envs/env_test_util.h"

namespace tidal::envs {
namespace {

using nlohmann::json;
using testing::OpenBuiltin;
using testing::Reward;

TEST(CountdownTest, EveryTaskIsSolvedByItsReference) {
  auto env = OpenBuiltin("countdown");
  ASSERT_NE(env, nullptr);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    auto t = env->Reset(seed);
    ASSERT_TRUE(t.ok()) << t.status();
    const int64_t target = t->hidden["target"];
    EXPECT_GE(target, 10);
    EXPECT_LE(target, 100);
    EXPECT_EQ(t->hidden["numbers"].size(), 4u);
    ASSERT_TRUE(t->reference.has_value());
    auto s = env->Score(*t, *t->reference);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->reward, 1.0) << t->prompt << " ->" << *t->reference << " " << s->info.dump();
  }
}

TEST(CountdownTest, VerifiesTheNumberBudgetAndTheTarget) {
  auto env = OpenBuiltin("countdown", {{"format_reward", 0.1}});
  ASSERT_NE(env, nullptr);
  const json hidden = {{"numbers", {3, 7, 25, 50}}, {"target", 82}};
  EXPECT_EQ(Reward(*env, hidden, " 25+50+7"), 1.0);
  EXPECT_EQ(Reward(*env, hidden, "25 + 50 + 7 = 82"), 1.0);
  EXPECT_EQ(Reward(*env, hidden, "thinking...\n<answer>(50+25)+7</answer>"), 1.0);
  EXPECT_EQ(Reward(*env, hidden, "50+50-25+7"), 0.0);   // 50 used twice
  EXPECT_EQ(Reward(*env, hidden, "75+7"), 0.0);          // 75 is not given
  EXPECT_EQ(Reward(*env, hidden, "25+50+3"), 0.1);       // valid, wrong value
  EXPECT_EQ(Reward(*env, hidden, "25+50+7.0"), 1.0);     // 7.0 is the number 7
  EXPECT_EQ(Reward(*env, hidden, "25+50+"), 0.0);        // does not parse
  EXPECT_EQ(Reward(*env, hidden, "(50*3-25)/7*7-43"), 0.0);  // 7 twice
  EXPECT_EQ(Reward(*env, json{{"numbers", {4, 6}}, {"target", 1}}, "6/4"), 0.1);  // 3/2 != 1
  auto s = env->Score(hidden, "50+50-25+7");
  ASSERT_TRUE(s.ok());
  EXPECT_NE(s->info["verdict"].get<std::string>().find("uses 50 more often"), std::string::npos);
}

TEST(CountdownTest, UseAllRequiresEveryNumber) {
  auto env = OpenBuiltin("countdown", {{"use_all", true}});
  ASSERT_NE(env, nullptr);
  const json hidden = {{"numbers", {3, 7, 25, 50}}, {"target", 82}};
  EXPECT_EQ(Reward(*env, hidden, "25+50+7"), 0.0);
  EXPECT_EQ(Reward(*env, hidden, "25+50+7*3-3*7"), 0.0);  // 3 and 7 twice
  EXPECT_EQ(Reward(*env, json{{"numbers", {3, 7, 25, 50}}, {"target", 85}}, "25+50+7+3"), 1.0);
  for (uint64_t seed = 0; seed < 30; ++seed) {
    auto t = env->Reset(seed);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(Reward(*env, t->hidden, *t->reference), 1.0) << *t->reference;
  }
}

TEST(CountdownTest, EvalPuzzlesNeverAppearInTraining) {
  auto env = OpenBuiltin("countdown", {{"count", 3}, {"max_number", 6}, {"min_target", 1},
                                       {"max_target", 30}, {"eval_fraction", 0.3}});
  ASSERT_NE(env, nullptr);
  std::set<std::string> train, eval;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    auto t = env->Reset(seed), e = env->Reset(seed, Split::kEval);
    ASSERT_TRUE(t.ok() && e.ok());
    auto key = [](const Task& task) {
      auto n = task.hidden["numbers"].get<std::vector<int64_t>>();
      std::sort(n.begin(), n.end());
      return json(n).dump() + "=" + task.hidden["target"].dump();
    };
    train.insert(key(*t));
    eval.insert(key(*e));
  }
  EXPECT_GT(eval.size(), 10u);
  for (const auto& k : eval) EXPECT_EQ(train.count(k), 0u) << k;
}

}  // namespace
}  // namespace tidal::envs
