#include "scheduler/tag_policy.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

PolicyInputs TwoDevices(Tag tag0, int groups0 = 0) {
  PolicyInputs in;
  in.devices = {{Tag::kTrain, tag0, groups0}, {Tag::kRollout, Tag::kRollout, 2}};
  return in;
}

TEST(TagPolicyTest, Parse) {
  EXPECT_EQ(TagPolicyName(*ParseTagPolicy("elastic")), "elastic");
  EXPECT_EQ(TagPolicyName(*ParseTagPolicy("static")), "static");
  EXPECT_EQ(TagPolicyName(*ParseTagPolicy("colocated")), "colocated");
  // The controller's typed path names the same policies as the recipe's pool.policy values.
  for (PoolPolicy p : {PoolPolicy::kStatic, PoolPolicy::kColocated, PoolPolicy::kElastic}) {
    EXPECT_EQ(TagPolicyName(TagPolicyFor(p)), EnumName(p));
  }
  auto bad = ParseTagPolicy("dynamic");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("dynamic"), std::string::npos);
}

TEST(TagPolicyTest, StaticNeverMoves) {
  PolicyInputs in = TwoDevices(Tag::kTrain);
  in.dispatchable_groups = 10;
  EXPECT_EQ(DecideTags(StaticPolicy{}, in), (std::vector<Tag>{Tag::kTrain, Tag::kRollout}));
}

TEST(TagPolicyTest, ElasticLendsAnIdleTrainDeviceToRollout) {
  PolicyInputs in = TwoDevices(Tag::kTrain);
  in.dispatchable_groups = 3;
  EXPECT_EQ(DecideTags(ElasticPolicy{}, in), (std::vector<Tag>{Tag::kRollout, Tag::kRollout}));
  // Nothing to roll out and nothing to train: stays home.
  in.dispatchable_groups = 0;
  EXPECT_EQ(DecideTags(ElasticPolicy{}, in)[0], Tag::kTrain);
}

TEST(TagPolicyTest, ElasticRecallsWhenABatchIsReady) {
  PolicyInputs in = TwoDevices(Tag::kRollout, /*groups0=*/2);
  in.dispatchable_groups = 5;
  in.batch_ready = true;
  EXPECT_EQ(DecideTags(ElasticPolicy{}, in)[0], Tag::kTrain);
  in.batch_ready = false;
  in.train_running = true;
  EXPECT_EQ(DecideTags(ElasticPolicy{}, in)[0], Tag::kTrain);
  // After the step its paused groups bring it back to rollout even with no new work.
  in.train_running = false;
  in.dispatchable_groups = 0;
  EXPECT_EQ(DecideTags(ElasticPolicy{}, in)[0], Tag::kRollout);
  // Home-rollout devices never move.
  EXPECT_EQ(DecideTags(ElasticPolicy{}, in)[1], Tag::kRollout);
}

TEST(TagPolicyTest, ColocatedGangSwitches) {
  PolicyInputs in = TwoDevices(Tag::kRollout);
  EXPECT_EQ(DecideTags(ColocatedPolicy{}, in), (std::vector<Tag>{Tag::kRollout, Tag::kRollout}));
  in.batch_ready = true;
  EXPECT_EQ(DecideTags(ColocatedPolicy{}, in), (std::vector<Tag>{Tag::kTrain, Tag::kTrain}));
}

// During the SFT warm-up a colocated pool stays on train between steps (no rollout work exists);
// work to dispatch (the after-warm-up eval) or groups still on a device take it back to rollout.
TEST(TagPolicyTest, ColocatedStaysOnTrainThroughTheWarmup) {
  PolicyInputs in;
  in.devices = {{Tag::kRollout, Tag::kTrain, 0}, {Tag::kRollout, Tag::kTrain, 0}};
  in.warmup = true;
  EXPECT_EQ(DecideTags(ColocatedPolicy{}, in), (std::vector<Tag>{Tag::kTrain, Tag::kTrain}));
  in.dispatchable_groups = 3;
  EXPECT_EQ(DecideTags(ColocatedPolicy{}, in), (std::vector<Tag>{Tag::kRollout, Tag::kRollout}));
  in.dispatchable_groups = 0;
  in.devices[1].rollout_groups = 1;
  EXPECT_EQ(DecideTags(ColocatedPolicy{}, in), (std::vector<Tag>{Tag::kRollout, Tag::kRollout}));
  in.devices[1].rollout_groups = 0;
  in.warmup = false;  // in RL, idle between steps means rollout (the next batch)
  EXPECT_EQ(DecideTags(ColocatedPolicy{}, in), (std::vector<Tag>{Tag::kRollout, Tag::kRollout}));
}

TEST(TagPolicyTest, MoveReasons) {
  EXPECT_STREQ(MoveReason(ColocatedPolicy{}, Tag::kTrain), "gang");
  EXPECT_STREQ(MoveReason(ElasticPolicy{}, Tag::kRollout), "lend");
  EXPECT_STREQ(MoveReason(ElasticPolicy{}, Tag::kTrain), "recall");
}

TEST(TagPolicyTest, TrainGroupAndEngines) {
  std::vector<Tag> homes = {Tag::kTrain, Tag::kRollout, Tag::kRollout};
  EXPECT_EQ(TrainGroup(StaticPolicy{}, homes), (std::vector<int>{0}));
  EXPECT_EQ(TrainGroup(ElasticPolicy{}, homes), (std::vector<int>{0}));
  EXPECT_EQ(TrainGroup(ColocatedPolicy{}, homes), (std::vector<int>{0, 1, 2}));
  EXPECT_FALSE(HostsEngine(StaticPolicy{}, Tag::kTrain));
  EXPECT_TRUE(HostsEngine(ElasticPolicy{}, Tag::kTrain));
  EXPECT_TRUE(HostsEngine(StaticPolicy{}, Tag::kRollout));
}

}  // namespace
}  // namespace tidal::scheduler
