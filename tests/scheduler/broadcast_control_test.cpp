// The controller's side of the weight broadcast (scheduler/broadcast_control.h): membership,
// epochs, tickets, version notices and resends, message by message.
#include "scheduler/broadcast_control.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

using Outbox = BroadcastControl::Outbox;

template <class T>
std::vector<std::pair<int, T>> Of(const Outbox& out) {
  if constexpr (std::is_same_v<T, WeightGroupEpoch>) return out.epochs;
  if constexpr (std::is_same_v<T, WeightGroupJoin>) return out.joins;
  if constexpr (std::is_same_v<T, WeightIncoming>) return out.incoming;
}

// Static split: device 0 trains (rank 0), devices 1 and 2 roll out.
TEST(BroadcastControlTest, ReceiversJoinAndGetTicketsOnceThePublisherHandsOutTheKey) {
  BroadcastControl c({0}, "run.wb");
  EXPECT_EQ(c.CurrentEpoch().world_size, 1);  // nobody to broadcast to yet
  Outbox out = c.ReceiverReady(1, -1);
  auto epochs = Of<WeightGroupEpoch>(out);
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_EQ(epochs[0].first, 0);  // the train rank learns the epoch
  EXPECT_EQ(epochs[0].second.epoch, 1);
  EXPECT_EQ(epochs[0].second.world_size, 2);
  EXPECT_EQ(epochs[0].second.group_base, "run.wb");
  out = c.ReceiverReady(2, -1);
  EXPECT_EQ(Of<WeightGroupEpoch>(out).at(0).second.epoch, 2);
  EXPECT_EQ(c.Receivers(), (std::vector<int>{1, 2}));
  EXPECT_FALSE(c.ResendDue());  // no version existed when they joined

  // A key for the old epoch is ignored; a key from a receiver too.
  EXPECT_TRUE(c.OnKey(0, WeightGroupKey{1, "aa"}).empty());
  EXPECT_TRUE(c.OnKey(1, WeightGroupKey{2, "aa"}).empty());
  auto joins = Of<WeightGroupJoin>(c.OnKey(0, WeightGroupKey{2, "abcd"}));
  ASSERT_EQ(joins.size(), 2u);
  EXPECT_EQ(joins[0].first, 1);
  EXPECT_EQ(joins[0].second.rank, 1);
  EXPECT_EQ(joins[1].first, 2);
  EXPECT_EQ(joins[1].second.rank, 2);
  for (const auto& [d, j] : joins) {
    EXPECT_EQ(j.epoch, 2);
    EXPECT_EQ(j.world_size, 3);
    EXPECT_EQ(j.key_hex, "abcd");
  }
}

TEST(BroadcastControlTest, EveryReceiverOfTheEpochIsToldOfTheVersion) {
  BroadcastControl c({0}, "g");
  c.ReceiverReady(1, -1);
  c.ReceiverReady(2, -1);
  c.OnKey(0, WeightGroupKey{2, "k"});
  auto in = Of<WeightIncoming>(c.OnStarting(0, WeightBroadcastStarting{2, 5}));
  ASSERT_EQ(in.size(), 2u);
  EXPECT_EQ(in[0].second.version, 5);
  EXPECT_EQ(in[0].second.epoch, 2);
  // A stale epoch is not forwarded (the publisher times out and reports).
  EXPECT_TRUE(c.OnStarting(0, WeightBroadcastStarting{1, 6}).empty());
  // Only the publisher starts broadcasts.
  EXPECT_TRUE(c.OnStarting(1, WeightBroadcastStarting{2, 6}).empty());
  c.OnDone(0, WeightBroadcastDone{2, 5, true, "", false, 1000, 2});
  EXPECT_EQ(c.versions(), 1);
  EXPECT_EQ(c.bytes(), 1000);
}

TEST(BroadcastControlTest, ADeadReceiverLeavesAndAFailedGroupIsRenewedAndTheVersionResent) {
  BroadcastControl c({0}, "g");
  c.ReceiverReady(1, -1);
  c.ReceiverReady(2, -1);
  c.OnKey(0, WeightGroupKey{2, "k"});
  c.OnStarting(0, WeightBroadcastStarting{2, 3});
  // Device 2 dies mid-broadcast: a new epoch without it.
  auto epochs = Of<WeightGroupEpoch>(c.ReceiverGone(2));
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_EQ(epochs[0].second.epoch, 3);
  EXPECT_EQ(epochs[0].second.world_size, 2);
  EXPECT_TRUE(c.ReceiverGone(2).empty());  // once
  // The publisher's collective on epoch 2 fails: the version is owed; epoch 3 already replaced it.
  EXPECT_TRUE(c.OnDone(0, WeightBroadcastDone{2, 3, false, "timeout", true}).empty());
  EXPECT_EQ(c.ResendDue(), 3);
  EXPECT_EQ(c.failures(), 1);
  c.ResendStarted();
  EXPECT_FALSE(c.ResendDue());
  // A failure on the current epoch renews it (same members, new group).
  auto renewed = Of<WeightGroupEpoch>(c.OnDone(0, WeightBroadcastDone{3, 3, false, "timeout", true}));
  ASSERT_EQ(renewed.size(), 1u);
  EXPECT_EQ(renewed[0].second.epoch, 4);
  EXPECT_EQ(renewed[0].second.world_size, 2);
  EXPECT_EQ(c.ResendDue(), 3);
  // The publisher's own refusal (non-finite values) keeps the group and owes nothing new.
  c.ResendStarted();
  EXPECT_TRUE(c.OnDone(0, WeightBroadcastDone{4, 4, false, "non-finite", false}).empty());
  EXPECT_FALSE(c.ResendDue());
}

TEST(BroadcastControlTest, RejectionsAndLateJoinersAreOwedTheVersionUntilANewerOneStarts) {
  BroadcastControl c({0}, "g");
  c.ReceiverReady(1, -1);
  c.OnKey(0, WeightGroupKey{1, "k"});
  c.OnStarting(0, WeightBroadcastStarting{1, 7});
  c.OnRejected(1, 7);  // checksum mismatch
  EXPECT_EQ(c.ResendDue(), 7);
  c.OnRejected(0, 8);  // not a receiver: ignored
  EXPECT_EQ(c.ResendDue(), 7);
  c.OnStarting(0, WeightBroadcastStarting{1, 7});  // the resend carries it
  EXPECT_FALSE(c.ResendDue());
  // A receiver restarts after version 7 exists: it rejoins (new epoch) and is owed 7.
  c.ReceiverGone(1);
  auto epochs = Of<WeightGroupEpoch>(c.ReceiverReady(1, 7));
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_EQ(epochs[0].second.world_size, 2);
  EXPECT_EQ(c.ResendDue(), 7);
  c.OnKey(0, WeightGroupKey{c.CurrentEpoch().epoch, "k2"});
  c.OnStarting(0, WeightBroadcastStarting{c.CurrentEpoch().epoch, 8});  // a newer version settles it
  EXPECT_FALSE(c.ResendDue());
}

// Elastic: devices move between the train group and the rollout side.
TEST(BroadcastControlTest, TrainGroupChangesMoveThePublisherAndDropTrainRanksFromTheReceivers) {
  BroadcastControl c({0}, "g");
  c.ReceiverReady(1, -1);
  c.ReceiverReady(2, -1);
  EXPECT_TRUE(c.ReceiverReady(0, -1).empty());  // a train rank with an engine is never a receiver
  // Device 1 joins the train group (ranks 0, 1): it leaves the receivers.
  auto epochs = Of<WeightGroupEpoch>(c.SetTrainGroup({0, 1}));
  ASSERT_EQ(epochs.size(), 2u);  // both train ranks learn the epoch
  EXPECT_EQ(c.Receivers(), (std::vector<int>{2}));
  EXPECT_EQ(epochs[0].second.world_size, 2);
  // The same group again (a resize that moved no receiver): still a new epoch, the train ranks
  // rebuilt their transports.
  const int64_t before = c.CurrentEpoch().epoch;
  EXPECT_EQ(Of<WeightGroupEpoch>(c.SetTrainGroup({0, 1})).at(0).second.epoch, before + 1);
  // Rank 0 moves to device 1; device 0 goes back to rollout and receives from now on.
  c.SetTrainGroup({1});
  EXPECT_EQ(c.membership().ranks().front(), "1");
  c.ReceiverReady(0, -1);
  EXPECT_EQ(c.Receivers(), (std::vector<int>{2, 0}));
  EXPECT_TRUE(c.OnKey(0, WeightGroupKey{c.CurrentEpoch().epoch, "k"}).empty());  // no longer the publisher
  EXPECT_EQ(Of<WeightGroupJoin>(c.OnKey(1, WeightGroupKey{c.CurrentEpoch().epoch, "k"})).size(), 2u);
}

}  // namespace
}  // namespace tidal::scheduler
