#include "weight_sync/broadcast_membership.h"

#include <algorithm>

namespace tidal::weight_sync {

BroadcastMembership::BroadcastMembership(std::string publisher) { ranks_.push_back(std::move(publisher)); }

void BroadcastMembership::NewEpoch() {
  ++epoch_;
  id_.clear();
}

std::optional<int32_t> BroadcastMembership::RankOf(const std::string& worker) const {
  auto it = std::find(ranks_.begin(), ranks_.end(), worker);
  if (it == ranks_.end()) return std::nullopt;
  return static_cast<int32_t>(it - ranks_.begin());
}

bool BroadcastMembership::Join(const std::string& worker) {
  if (RankOf(worker)) return false;
  ranks_.push_back(worker);
  NewEpoch();
  return true;
}

bool BroadcastMembership::Leave(const std::string& worker) {
  auto r = RankOf(worker);
  if (!r || *r == 0) return false;
  ranks_.erase(ranks_.begin() + *r);
  NewEpoch();
  return true;
}

bool BroadcastMembership::SetPublisher(const std::string& worker) {
  if (ranks_[0] == worker) return false;
  if (auto r = RankOf(worker)) ranks_.erase(ranks_.begin() + *r);
  ranks_[0] = worker;
  NewEpoch();
  return true;
}

absl::Status BroadcastMembership::SetId(int64_t epoch, std::string id) {
  if (epoch != epoch_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight broadcast group: id for epoch %d arrived during epoch %d (membership changed); rebuild", epoch,
        epoch_));
  }
  if (id.empty()) return absl::InvalidArgumentError("weight broadcast group: empty NCCL id");
  if (!id_.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat("weight broadcast group: epoch %d already has an id", epoch));
  }
  id_ = std::move(id);
  return absl::OkStatus();
}

absl::StatusOr<GroupTicket> BroadcastMembership::Ticket(const std::string& worker) const {
  auto r = RankOf(worker);
  if (!r) {
    return absl::NotFoundError(absl::StrCat("weight broadcast group: '", worker, "' is not a member of epoch ", epoch_));
  }
  if (ranks_.size() < 2) {
    return absl::FailedPreconditionError("weight broadcast group: no receiver has joined");
  }
  if (id_.empty() && *r != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight broadcast group: epoch %d waits for the publisher's NCCL id", epoch_));
  }
  return GroupTicket{epoch_, *r, world_size(), id_};
}

}  // namespace tidal::weight_sync
