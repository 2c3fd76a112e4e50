// The controller's side of the weight-broadcast transport (weight_transport "nccl",
// weight_sync/broadcast_publisher.h): who is in the group, which epoch it is in, who gets which
// message, and when a version must be sent again. Plain decisions, no sockets: every call
// returns the messages to send (device, message) and the controller sends them in order.
//
// Membership (weight_sync/broadcast_membership.h; members are named by device index):
// - publisher: the device of train rank 0 (SetTrainGroup; an elastic resize may move it);
// - receivers: every ready engine-hosting device that is not a train rank (ReceiverReady /
//   ReceiverGone, and SetTrainGroup drops devices that moved into the train group). Train ranks
//   that host an engine install from their own gathered copy and are never receivers.
// Every change is a new epoch: the train ranks get WeightGroupEpoch (the publisher connects at its
// next broadcast and hands back the key, OnKey), each receiver gets its WeightGroupJoin ticket.
//
// Versions: OnStarting (rank 0 is about to broadcast V in epoch E) -> WeightIncoming to each
// receiver of E. A version is owed again (ResendDue) when a receiver rejected it, when a
// broadcast failed (a dead group also renews the epoch), and when a receiver joins after a
// version exists (a late joiner gets the current version); a newer broadcast settles it. The
// controller spends control.budget.weight_resends on rejections and failed broadcasts, as for
// the relay, so a version that can never get through stops the run.
//
// Contract: the controller's thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scheduler/protocol.h"
#include "weight_sync/broadcast_membership.h"

namespace tidal::scheduler {

class BroadcastControl {
 public:
  // What to send, by message type, each to a device (in order within a type).
  struct Outbox {
    std::vector<std::pair<int, WeightGroupEpoch>> epochs;
    std::vector<std::pair<int, WeightGroupJoin>> joins;
    std::vector<std::pair<int, WeightIncoming>> incoming;
    bool empty() const { return epochs.empty() && joins.empty() && incoming.empty(); }
  };

  // `group_base`: the run's unique prefix for CPU (shm) group names.
  BroadcastControl(std::vector<int> train_group, std::string group_base);

  // The train group after an elastic resize (rank order): always a new epoch (the train ranks
  // rebuild their transports).
  Outbox SetTrainGroup(std::vector<int> train_group);
  // An engine worker without a train rank is ready (started or restarted); `version` is the
  // newest policy version (-1: none yet).
  Outbox ReceiverReady(int device, int64_t version);
  // A device stopped being a receiver (its worker died or exited).
  Outbox ReceiverGone(int device);
  // Train rank 0's key for `epoch`. A key from another device or for an old epoch is ignored.
  Outbox OnKey(int device, const WeightGroupKey& key);
  // Rank 0 starts broadcasting. Receivers of a stale epoch are not told: the publisher's
  // collective then times out and OnDone takes over.
  Outbox OnStarting(int device, const WeightBroadcastStarting& m);
  // Rank 0's outcome.
  Outbox OnDone(int device, const WeightBroadcastDone& m);
  // A receiver refused `version` (checksum, not connected, failed collective).
  void OnRejected(int device, int64_t version);

  // The version owed to the receivers, if any; ResendStarted when PublishWeights went out.
  std::optional<int64_t> ResendDue() const { return resend_; }
  void ResendStarted() { resend_.reset(); }

  // The epoch as the train ranks must know it (sent again to a train rank that becomes ready).
  WeightGroupEpoch CurrentEpoch() const { return {members_.epoch(), members_.world_size(), group_base_}; }
  const weight_sync::BroadcastMembership& membership() const { return members_; }
  std::vector<int> Receivers() const;
  bool IsReceiver(int device) const;

  // Totals for the summary.
  int64_t versions() const { return versions_; }  // broadcasts rank 0 completed (resends included)
  int64_t bytes() const { return bytes_; }        // wire bytes broadcast (once per version)
  int64_t failures() const { return failures_; }
  int64_t epochs() const { return members_.epoch(); }

 private:
  Outbox EpochChanged();
  void Owe(int64_t version);

  std::vector<int> train_group_;
  std::string group_base_;
  weight_sync::BroadcastMembership members_;
  std::optional<int64_t> resend_;
  int64_t versions_ = 0, bytes_ = 0, failures_ = 0;
};

}  // namespace tidal::scheduler
