// Who is in the weight-broadcast group, epoch by epoch: the controller's side of the dedicated
// NCCL communicator between the publisher (train rank 0) and the rollout workers. It is separate
// from the trainers' gradient communicator and rebuilt whenever its membership changes.
//
// Contract (torch-free, no NCCL: the controller owns one instance on its thread):
// - Rank 0 is always the publisher; receivers follow in the order they joined. Join / Leave /
//   SetPublisher return true when the membership changed: a new epoch starts, every member of
//   the old epoch must drop its communicator (an in-flight broadcast on it fails and the version
//   is retried on the new one) and build the new one from its ticket.
// - NCCL's unique id is made by the publisher (it is the one that calls ncclGetUniqueId when it
//   builds rank 0) and handed to the controller with SetId(epoch, id); receivers get it in their
//   Ticket over the control plane. An id for an old epoch is refused, so a slow publisher cannot
//   hand out a communicator that no longer matches the membership.
// - A group of the publisher alone (no receivers) has no ticket to hand out: there is no one to
//   broadcast to, and the publisher skips the transfer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace tidal::weight_sync {

struct GroupTicket {
  int64_t epoch = 0;
  int32_t rank = 0;
  int32_t world_size = 0;
  std::string nccl_id;  // raw ncclUniqueId bytes
};

class BroadcastMembership {
 public:
  explicit BroadcastMembership(std::string publisher);

  bool Join(const std::string& worker);
  // A receiver left or died. Leaving the publisher is refused (SetPublisher moves it).
  bool Leave(const std::string& worker);
  // Train rank 0 moved to another worker (elastic train group); the old publisher, if it was a
  // receiver too, is dropped.
  bool SetPublisher(const std::string& worker);
  // Same members, new epoch: the old epoch's group failed (a connect or a collective timed out)
  // and nobody may use it again.
  void Renew() { NewEpoch(); }

  // The publisher's id for `epoch`; FailedPrecondition for a stale epoch or a second id.
  absl::Status SetId(int64_t epoch, std::string id);

  // What `worker` needs to build its communicator. NotFound for a non-member,
  // FailedPrecondition while the epoch's id has not arrived or the group has no receiver.
  absl::StatusOr<GroupTicket> Ticket(const std::string& worker) const;

  int64_t epoch() const { return epoch_; }
  int32_t world_size() const { return static_cast<int32_t>(ranks_.size()); }
  const std::vector<std::string>& ranks() const { return ranks_; }
  std::optional<int32_t> RankOf(const std::string& worker) const;
  bool has_id() const { return !id_.empty(); }

 private:
  void NewEpoch();

  int64_t epoch_ = 0;
  std::vector<std::string> ranks_;  // [0] = publisher
  std::string id_;
};

}  // namespace tidal::weight_sync
