// Prompt accounting: every prompt handed to rollout is traced from creation to "trained on" or
// "dropped with a reason".
//
// Contract:
// - Owned and mutated by the controller's event-loop thread only.
// - Life of a prompt: Create -> Queued -> Dispatch(worker) -> InFlight -> Complete -> Stored
//   -> Trained(step) | Drop(reason).  Requeue moves InFlight back to Queued (its worker died or
//   was recalled) and bumps the attempt number, so a late answer from the old attempt is refused
//   by Complete instead of being counted twice. Drop is legal from any non-terminal state.
// - Unaccounted() counts prompts not in a terminal state. At the end of a run the controller
//   drops what it still holds (queued, stored) with explicit reasons and aborts in-flight work on
//   live workers; whatever is still open after that is a real loss and is reported as such.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/status.h"

namespace tidal::scheduler {

enum class PromptState { kQueued, kInFlight, kStored, kTrained, kDropped };
const char* PromptStateName(PromptState s);

struct PromptRecord {
  int64_t id = 0;
  uint64_t task_seed = 0;  // the environment seed that reproduces the task
  PromptState state = PromptState::kQueued;
  int worker = -1;       // device index while in flight
  int64_t attempt = 0;   // number of dispatches so far
  int64_t trained_step = -1;
  std::string drop_reason;
};

struct LedgerSummary {
  int64_t created = 0, queued = 0, in_flight = 0, stored = 0, trained = 0, dropped = 0;
  int64_t requeued = 0;  // total requeue events (a prompt may be requeued more than once)
  std::map<std::string, int64_t> dropped_by_reason;
  int64_t unaccounted() const { return created - trained - dropped; }
};

class PromptLedger {
 public:
  int64_t Create(uint64_t task_seed);
  // Queued -> InFlight on `worker`; returns the attempt number the worker must echo back.
  absl::StatusOr<int64_t> Dispatch(int64_t id, int worker);
  // InFlight -> Queued; the prompt will be dispatched again. Returns false if not in flight.
  bool Requeue(int64_t id);
  // Requeues everything in flight on `worker` (it died); returns the ids, oldest first.
  std::vector<int64_t> RequeueWorker(int worker);
  // InFlight (this attempt, from this worker) -> Stored. A stale attempt or unknown id is an
  // error: the caller discards the result.
  absl::Status Complete(int64_t id, int64_t attempt, int worker);
  absl::Status Trained(int64_t id, int64_t step);
  absl::Status Drop(int64_t id, std::string reason);

  const PromptRecord* Find(int64_t id) const;
  // Oldest queued prompt (requeued prompts keep their old id, so they go first); -1 if none.
  int64_t NextQueued() const { return queued_.empty() ? -1 : *queued_.begin(); }
  // Ids in `state`, ascending (oldest first). O(prompts): for summaries, not the hot path.
  std::vector<int64_t> InState(PromptState state) const;
  int64_t Count(PromptState state) const;
  int64_t created() const { return next_id_; }
  LedgerSummary Summary() const;

 private:
  absl::Status Expect(int64_t id, PromptState state, const char* op) const;
  void Move(PromptRecord& r, PromptState to);

  std::map<int64_t, PromptRecord> records_;  // ordered: oldest prompt first
  std::set<int64_t> queued_;
  int64_t next_id_ = 0;
  int64_t requeued_ = 0;
  std::array<int64_t, 5> counts_{};
};

}  // namespace tidal::scheduler
