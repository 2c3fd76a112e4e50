// The tag timeline: every tag move of a run, one JSON object a line in <run_dir>/tag_timeline.jsonl
// (format in docs/controller.md, "Tag timeline"), plus a count per (from, to, reason) that the
// controller exports as the counter tidal_tag_moves_total{device,from,to,reason}.
//
// A line:
//   {"t":12.503,"step":41,"device":1,"name":"cpu:1","from":"rollout","to":"train",
//    "reason":"train_bound","train_group":[0,1]}
// t: seconds since the controller started (the clock of events.jsonl's "wall"); step: train
// steps done when the move happened; train_group: the train group after the move (device
// indices, rank order; omitted for moves that do not change it, e.g. lend/recall).
//
// Reasons (closed set, so a dashboard can colour them):
//   lend          an idle train-group device rolls out until the next batch is ready (elastic)
//   recall        a lent device returns because a batch is ready or a step runs (elastic)
//   gang          colocated: every device switches together
//   train_bound   elastic split: training is the bottleneck, the train group grows
//   rollout_bound elastic split: rollout is the bottleneck, the train group shrinks
//   long_tail     idle rollout devices (the next batch fully dispatched) join training
//   bounds        the group was outside its minimum/maximum and is repaired
//   plan          pool.elastic.plan set the train group's size at this step
// Train-group moves (train_bound .. plan) change the device's side (its home): "from"/"to" are
// the sides; the device's tag then follows the lend/recall rule.
//
// Contract: the controller's event-loop thread only. Writes are line-buffered and flushed per
// move (a crashed run keeps every move it made); a write failure is logged once and the counts
// keep going (the run never fails for its timeline).
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "scheduler/device_pool.h"

namespace tidal::scheduler {

struct TagMoveRecord {
  double t = 0;
  int64_t step = 0;
  int device = 0;
  std::string name;  // "cpu:1"
  Tag from = Tag::kRollout, to = Tag::kTrain;
  std::string reason;
  std::vector<int> train_group;  // empty: unchanged by this move
};

// One line of the timeline (no trailing newline).
std::string TagMoveJson(const TagMoveRecord& move);
// Whether `reason` is one of the documented reasons.
bool KnownMoveReason(const std::string& reason);

class TagTimeline {
 public:
  TagTimeline() = default;
  ~TagTimeline();
  TagTimeline(const TagTimeline&) = delete;
  TagTimeline& operator=(const TagTimeline&) = delete;

  // Opens the file (truncated, or appended to when a run resumes); "" keeps counts only.
  bool Open(const std::string& path, bool append = false);
  void Record(const TagMoveRecord& move);

  using Key = std::tuple<std::string, std::string, std::string>;  // from, to, reason
  const std::map<Key, int64_t>& counts() const { return counts_; }
  int64_t total() const { return total_; }

 private:
  std::FILE* file_ = nullptr;
  bool warned_ = false;
  std::map<Key, int64_t> counts_;
  int64_t total_ = 0;
};

}  // namespace tidal::scheduler
