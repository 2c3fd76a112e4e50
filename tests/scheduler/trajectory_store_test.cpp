#include "scheduler/trajectory_store.h"

#include <gtest/gtest.h>

#include "trainer/advantages.h"

namespace tidal::scheduler {
namespace {

TrajectoryGroup Group(int64_t id, std::vector<int64_t> versions, std::vector<double> rewards = {1, 0}) {
  TrajectoryGroup g;
  g.prompt_id = id;
  for (double r : rewards) {
    Trajectory t;
    t.response_ids = std::vector<int32_t>(versions.size(), 7);
    t.versions = versions;
    t.reward = r;
    g.samples.push_back(t);
  }
  return g;
}

TEST(TrajectoryStoreTest, FifoBatches) {
  TrajectoryStore s(/*max_staleness=*/1, /*dynamic_sampling=*/false);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(s.Add(Group(i, {0, 0})).has_value());
  std::vector<DroppedGroup> dropped;
  EXPECT_FALSE(s.TakeBatch(4, 0, &dropped).has_value());
  auto b = s.TakeBatch(2, 0, &dropped);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ((*b)[0].prompt_id, 0);
  EXPECT_EQ((*b)[1].prompt_id, 1);
  EXPECT_EQ(s.size(), 1);
  EXPECT_TRUE(dropped.empty());
}

TEST(TrajectoryStoreTest, StaleGroupsAreDroppedByOldestToken) {
  TrajectoryStore s(1, false);
  s.Add(Group(0, {3, 4}));  // oldest token v3: batch 5 is 2 versions ahead -> stale
  s.Add(Group(1, {4, 5}));  // partial rollout across an update: oldest v4, ok for batch 5
  s.Add(Group(2, {5}));
  std::vector<DroppedGroup> dropped;
  auto b = s.TakeBatch(2, 5, &dropped);
  ASSERT_TRUE(b.has_value());
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0].prompt_id, 0);
  EXPECT_EQ(dropped[0].reason, "stale");
  EXPECT_EQ((*b)[0].prompt_id, 1);
  EXPECT_EQ((*b)[0].MinVersion(), 4);
  EXPECT_EQ((*b)[0].MaxVersion(), 5);
}

TEST(TrajectoryStoreTest, SynchronousModeAcceptsOnlyTheCurrentVersion) {
  TrajectoryStore s(0, false);
  s.Add(Group(0, {1}));
  s.Add(Group(1, {2}));
  std::vector<DroppedGroup> dropped;
  auto b = s.TakeBatch(1, 2, &dropped);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ((*b)[0].prompt_id, 1);
  EXPECT_EQ(dropped.size(), 1u);
}

TEST(TrajectoryStoreTest, DynamicSamplingDropsZeroVarianceGroups) {
  TrajectoryStore s(0, true);
  auto reason = s.Add(Group(0, {0}, {1, 1, 1}));
  ASSERT_TRUE(reason.has_value());
  EXPECT_EQ(*reason, "zero_reward_variance");
  EXPECT_FALSE(s.Add(Group(1, {0}, {1, 0, 1})).has_value());
  EXPECT_EQ(s.size(), 1);
  EXPECT_EQ(s.Clear(), (std::vector<int64_t>{1}));
  EXPECT_EQ(s.size(), 0);
}

// The store and the trainer share one zero-variance test (trainer/advantages.h), tolerance
// included; a group of one sample is not zero-variance here (the store keeps it).
TEST(TrajectoryStoreTest, DynamicSamplingUsesTheTrainersZeroVarianceTest) {
  TrajectoryStore s(0, true);
  EXPECT_EQ(s.Add(Group(0, {0}, {1, 1 + 0.5 * trainer::kUniformRewardTol})), "zero_reward_variance");
  EXPECT_FALSE(s.Add(Group(1, {0}, {1, 1 + 2 * trainer::kUniformRewardTol})).has_value());
  EXPECT_FALSE(s.Add(Group(2, {0}, {1})).has_value());
  EXPECT_EQ(s.size(), 2);
}

TEST(TrajectoryStoreTest, GroupStats) {
  TrajectoryGroup g = Group(0, {2, 2, 2}, {1, 0, 0.5});
  EXPECT_EQ(g.ResponseTokens(), 9);
  EXPECT_DOUBLE_EQ(g.MeanReward(), 0.5);
  EXPECT_FALSE(g.RewardsAllEqual());
  TrajectoryGroup empty;
  EXPECT_EQ(empty.MinVersion(), TrajectoryGroup::kNoVersion);
}

}  // namespace
}  // namespace tidal::scheduler

namespace tidal::scheduler {
namespace {

// Dynamic sampling drops zero-variance groups up to its limit per batch, then keeps them, so a
// collapsed policy still forms batches; the count restarts with each batch.
TEST(TrajectoryStoreTest, DynamicSamplingLimitKeepsARunMoving) {
  TrajectoryStore s(1, /*dynamic_sampling=*/true, /*max_filtered=*/2);
  EXPECT_EQ(s.Add(Group(0, {0}, {1, 1})), "zero_reward_variance");
  EXPECT_EQ(s.Add(Group(1, {0}, {0, 0})), "zero_reward_variance");
  EXPECT_FALSE(s.Add(Group(2, {0}, {0, 0})).has_value());  // limit reached: kept
  EXPECT_FALSE(s.Add(Group(3, {0}, {1, 0})).has_value());
  EXPECT_EQ(s.kept_unfiltered(), 1);
  std::vector<DroppedGroup> dropped;
  ASSERT_TRUE(s.TakeBatch(2, 0, &dropped).has_value());
  EXPECT_EQ(s.kept_unfiltered(), 0);
  EXPECT_EQ(s.Add(Group(4, {0}, {1, 1})), "zero_reward_variance");  // a fresh allowance
}

}  // namespace
}  // namespace tidal::scheduler
