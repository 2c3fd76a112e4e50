#include "scheduler/train_step.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

TrajectoryGroup Group(int64_t id, int64_t version, std::vector<double> rewards, int tokens = 2) {
  TrajectoryGroup g;
  g.prompt_id = id;
  for (double r : rewards) {
    Trajectory t;
    t.response_ids.assign(tokens, 1);
    t.versions.assign(tokens, version);
    t.reward = r;
    t.correct = r > 0.5;
    g.samples.push_back(t);
  }
  return g;
}

TEST(TrainStepTest, DealsGroupsRoundRobinToEveryRank) {
  std::vector<TrajectoryGroup> batch = {Group(10, 3, {1, 0}), Group(11, 3, {1, 1}), Group(12, 2, {0, 0})};
  AssembledStep s = AssembleTrainStep(batch, 2, /*step=*/7, /*version=*/4);
  ASSERT_EQ(s.shares.size(), 2u);
  EXPECT_EQ(s.shares[0].step, 7);
  EXPECT_EQ(s.shares[1].step, 7);
  ASSERT_EQ(s.shares[0].groups.size(), 2u);
  ASSERT_EQ(s.shares[1].groups.size(), 1u);
  EXPECT_EQ(s.shares[0].groups[0].prompt_id, 10);
  EXPECT_EQ(s.shares[1].groups[0].prompt_id, 11);
  EXPECT_EQ(s.shares[0].groups[1].prompt_id, 12);
  EXPECT_DOUBLE_EQ(s.staleness_sum, 1 + 1 + 2);
  EXPECT_DOUBLE_EQ(s.staleness_mean, 4.0 / 3);
  EXPECT_DOUBLE_EQ(s.reward_mean, 3.0 / 6);
  EXPECT_DOUBLE_EQ(s.accuracy, 3.0 / 6);
}

TEST(TrainStepTest, MoreRanksThanGroupsGetEmptySharesAndTokenlessGroupsAreFresh) {
  TrajectoryGroup empty;
  empty.prompt_id = 1;
  empty.samples.resize(2);  // no tokens: staleness 0
  AssembledStep s = AssembleTrainStep({empty}, 3, 0, 5);
  ASSERT_EQ(s.shares.size(), 3u);
  EXPECT_EQ(s.shares[2].groups.size(), 0u);
  EXPECT_DOUBLE_EQ(s.staleness_sum, 0);
}

TEST(TrainStepTest, AccountingKeepsTotalsAndTheLastBatch) {
  StepAccounting a;
  EXPECT_EQ(a.OnGroup(Group(1, 0, {1, 0}, 3), 1.0), 6);
  EXPECT_EQ(a.OnGroup(Group(2, 0, {1}, 5), 2.0), 5);
  EXPECT_EQ(a.rollout_tokens, 11);
  EXPECT_DOUBLE_EQ(a.response_tokens_mean(), 11.0 / 3);
  EXPECT_DOUBLE_EQ(a.response_len_max, 5);
  AssembledStep s = AssembleTrainStep({Group(1, 0, {1, 0}), Group(2, 1, {1, 1})}, 1, 0, 2);
  a.OnBatch(s, 2, /*kept_unfiltered=*/1);
  EXPECT_DOUBLE_EQ(a.last_staleness, 1.5);
  EXPECT_DOUBLE_EQ(a.mean_staleness(), 1.5);
  EXPECT_DOUBLE_EQ(a.last_reward, 0.75);
  EXPECT_EQ(a.last_kept_unfiltered, 1);
  EXPECT_DOUBLE_EQ(a.train_tokens_per_s(), 0);
  a.OnStepDone(100, 4.0);
  EXPECT_DOUBLE_EQ(a.train_tokens_per_s(), 25);
}

TEST(TrainStepTest, RateWindowNeedsASecondAndForgetsOldSamples) {
  RateWindow w(/*window_s=*/10);
  w.Add(0.0, 0);
  w.Add(0.5, 100);
  EXPECT_DOUBLE_EQ(w.Rate(0.5), 0);  // under a second would overstate the rate
  w.Add(2.0, 400);
  EXPECT_DOUBLE_EQ(w.Rate(2.0), 200);
  w.Add(20.0, 500);
  w.Add(21.0, 900);
  EXPECT_DOUBLE_EQ(w.Rate(21.0), 400);  // the samples older than 10 s are gone
}

}  // namespace
}  // namespace tidal::scheduler
