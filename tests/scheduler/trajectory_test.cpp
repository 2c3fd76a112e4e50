#include "scheduler/trajectory.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

TEST(TrajectoryTest, GroupSummaries) {
  TrajectoryGroup g;
  EXPECT_EQ(g.MinVersion(), TrajectoryGroup::kNoVersion);
  EXPECT_EQ(g.MaxVersion(), -1);
  EXPECT_EQ(g.MeanReward(), 0);
  Trajectory a, b;
  a.response_ids = {1, 2, 3};
  a.versions = {4, 4, 5};
  a.reward = 1;
  b.response_ids = {7};
  b.versions = {6};
  b.reward = 0;
  g.samples = {a, b};
  EXPECT_EQ(g.MinVersion(), 4);
  EXPECT_EQ(g.MaxVersion(), 6);
  EXPECT_EQ(g.ResponseTokens(), 4);
  EXPECT_DOUBLE_EQ(g.MeanReward(), 0.5);
  EXPECT_FALSE(g.RewardsAllEqual());
  g.samples[1].reward = 1;
  EXPECT_TRUE(g.RewardsAllEqual());
}

}  // namespace
}  // namespace tidal::scheduler
