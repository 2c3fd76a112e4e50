#include "weight_sync/broadcast_membership.h"

#include <gtest/gtest.h>

namespace tidal::weight_sync {
namespace {

TEST(BroadcastMembershipTest, JoinsGetRanksAfterThePublisherAndEachChangeIsAnEpoch) {
  BroadcastMembership m("train0");
  EXPECT_EQ(m.world_size(), 1);
  // Alone: nobody to broadcast to.
  EXPECT_EQ(m.Ticket("train0").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(m.Join("rollout1"));
  EXPECT_FALSE(m.Join("rollout1"));  // already in: no new epoch
  EXPECT_TRUE(m.Join("rollout2"));
  EXPECT_EQ(m.epoch(), 2);
  EXPECT_EQ(m.ranks(), (std::vector<std::string>{"train0", "rollout1", "rollout2"}));
  // The publisher may build rank 0 before any id exists (it makes the id); receivers wait.
  auto pub = m.Ticket("train0");
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->rank, 0);
  EXPECT_EQ(m.Ticket("rollout2").status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(m.SetId(2, "ID2").ok());
  auto t = m.Ticket("rollout2");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->rank, 2);
  EXPECT_EQ(t->world_size, 3);
  EXPECT_EQ(t->epoch, 2);
  EXPECT_EQ(t->nccl_id, "ID2");
  EXPECT_EQ(m.Ticket("stranger").status().code(), absl::StatusCode::kNotFound);
}

TEST(BroadcastMembershipTest, LeaveOrDeathRebuildsAndRefusesTheOldId) {
  BroadcastMembership m("train0");
  m.Join("r1");
  m.Join("r2");
  m.Join("r3");
  ASSERT_TRUE(m.SetId(m.epoch(), "old").ok());
  const int64_t before = m.epoch();
  EXPECT_TRUE(m.Leave("r2"));  // died mid-run
  EXPECT_EQ(m.epoch(), before + 1);
  EXPECT_FALSE(m.has_id());  // the old communicator's id is gone with it
  EXPECT_EQ(m.ranks(), (std::vector<std::string>{"train0", "r1", "r3"}));
  EXPECT_EQ(m.Ticket("r3").status().code(), absl::StatusCode::kFailedPrecondition);
  // A late id for the old epoch is refused; the new one is accepted once.
  EXPECT_EQ(m.SetId(before, "late").code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(m.SetId(m.epoch(), "new").ok());
  EXPECT_EQ(m.SetId(m.epoch(), "again").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m.Ticket("r3")->rank, 2);
  EXPECT_EQ(m.Ticket("r3")->nccl_id, "new");
  EXPECT_FALSE(m.Leave("r2"));      // gone already
  EXPECT_FALSE(m.Leave("train0"));  // the publisher moves with SetPublisher, never leaves
}

TEST(BroadcastMembershipTest, PublisherMovesWhenTheTrainGroupChanges) {
  BroadcastMembership m("train0");
  m.Join("w1");
  m.Join("w2");
  // w1 switched from rollout to train and became train rank 0.
  EXPECT_TRUE(m.SetPublisher("w1"));
  EXPECT_EQ(m.ranks(), (std::vector<std::string>{"w1", "w2"}));
  EXPECT_FALSE(m.SetPublisher("w1"));
  EXPECT_EQ(m.RankOf("train0"), std::nullopt);
}

}  // namespace
}  // namespace tidal::weight_sync
