#include "scheduler/trajectory_store.h"

#include <algorithm>
#include <climits>

namespace tidal::scheduler {

std::optional<std::string> TrajectoryStore::Add(TrajectoryGroup group) {
  if (group.samples.empty()) return std::string("empty_group");
  if (dynamic_sampling_ && group.samples.size() > 1 && group.RewardsAllEqual()) {
    if (filtered_since_batch_ < max_filtered_) {
      ++filtered_since_batch_;
      return std::string("zero_reward_variance");
    }
    ++kept_unfiltered_;
  }
  groups_.push_back(std::move(group));
  return std::nullopt;
}

std::optional<std::vector<TrajectoryGroup>> TrajectoryStore::TakeBatch(
    int groups, int64_t version, std::vector<DroppedGroup>* dropped) {
  for (auto it = groups_.begin(); it != groups_.end();) {
    int64_t oldest = it->MinVersion();
    // A group with no response tokens carries no version; it cannot be stale.
    if (oldest != TrajectoryGroup::kNoVersion && version - oldest > max_staleness_) {
      if (dropped != nullptr) dropped->push_back({it->prompt_id, "stale"});
      it = groups_.erase(it);
    } else {
      ++it;
    }
  }
  if (groups <= 0 || static_cast<int>(groups_.size()) < groups) return std::nullopt;
  filtered_since_batch_ = 0;
  kept_unfiltered_ = 0;
  std::vector<TrajectoryGroup> batch;
  batch.reserve(groups);
  for (int i = 0; i < groups; ++i) {
    batch.push_back(std::move(groups_.front()));
    groups_.pop_front();
  }
  return batch;
}

std::vector<int64_t> TrajectoryStore::Clear() {
  std::vector<int64_t> ids;
  for (const auto& g : groups_) ids.push_back(g.prompt_id);
  groups_.clear();
  return ids;
}

}  // namespace tidal::scheduler
