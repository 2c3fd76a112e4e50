// The controller's trajectory store: finished rollout groups wait here until they form a train
// batch.
//
// Contract:
// - Owned and mutated by the controller's event-loop thread only.
// - A group is the group_size samples of one prompt; it enters whole (Add) and leaves whole
//   (TakeBatch or a drop). FIFO: the oldest finished group trains first.
// - Staleness: batch k is trained by the policy at version k, producing k+1. A group whose oldest
//   token was sampled by version u may join batch k only if k - u <= max_staleness; older groups
//   are removed and reported as dropped ("stale"), never trained silently.
// - Dynamic sampling (DAPO): when enabled, a group whose rewards are all equal carries no
//   advantage signal and is dropped on Add ("zero_reward_variance") — at most `max_filtered`
//   of them between two batches. Past that the store keeps them (they add no gradient), so a
//   policy that has collapsed on every prompt still trains instead of sampling forever.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scheduler/trajectory.h"

namespace tidal::scheduler {

struct DroppedGroup {
  int64_t prompt_id;
  std::string reason;
};

class TrajectoryStore {
 public:
  TrajectoryStore(int max_staleness, bool dynamic_sampling, int64_t max_filtered = INT64_MAX)
      : max_staleness_(max_staleness), dynamic_sampling_(dynamic_sampling), max_filtered_(max_filtered) {}

  // Stores `group`, or returns the drop reason when it is filtered out.
  std::optional<std::string> Add(TrajectoryGroup group);

  // Removes groups too stale for batch `version` (appending them to `dropped`), then, if at least
  // `groups` remain, removes and returns the oldest `groups` of them.
  std::optional<std::vector<TrajectoryGroup>> TakeBatch(int groups, int64_t version,
                                                        std::vector<DroppedGroup>* dropped);
  // Removes everything (end of run); returns the prompt ids.
  std::vector<int64_t> Clear();

  int size() const { return static_cast<int>(groups_.size()); }
  int max_staleness() const { return max_staleness_; }
  // Zero-variance groups kept since the last batch because max_filtered was reached.
  int64_t kept_unfiltered() const { return kept_unfiltered_; }

 private:
  int max_staleness_;
  bool dynamic_sampling_;
  int64_t max_filtered_;
  int64_t filtered_since_batch_ = 0, kept_unfiltered_ = 0;
  std::deque<TrajectoryGroup> groups_;
};

}  // namespace tidal::scheduler
