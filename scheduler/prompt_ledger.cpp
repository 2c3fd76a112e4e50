#include "scheduler/prompt_ledger.h"

namespace tidal::scheduler {

const char* PromptStateName(PromptState s) {
  switch (s) {
    case PromptState::kQueued: return "queued";
    case PromptState::kInFlight: return "in_flight";
    case PromptState::kStored: return "stored";
    case PromptState::kTrained: return "trained";
    case PromptState::kDropped: return "dropped";
  }
  return "?";
}

int64_t PromptLedger::Create(uint64_t task_seed) {
  PromptRecord r;
  r.id = next_id_++;
  r.task_seed = task_seed;
  r.state = PromptState::kQueued;
  ++counts_[static_cast<int>(PromptState::kQueued)];
  queued_.insert(r.id);
  records_.emplace(r.id, r);
  return r.id;
}

void PromptLedger::Move(PromptRecord& r, PromptState to) {
  if (r.state == PromptState::kQueued) queued_.erase(r.id);
  if (to == PromptState::kQueued) queued_.insert(r.id);
  --counts_[static_cast<int>(r.state)];
  ++counts_[static_cast<int>(to)];
  r.state = to;
}

absl::Status PromptLedger::Expect(int64_t id, PromptState state, const char* op) const {
  const PromptRecord* r = Find(id);
  if (r == nullptr) return absl::NotFoundError(absl::StrFormat("prompt %d: %s: unknown id", id, op));
  if (r->state != state) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "prompt %d: %s: expected state %s, found %s", id, op, PromptStateName(state),
        PromptStateName(r->state)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> PromptLedger::Dispatch(int64_t id, int worker) {
  TIDAL_RETURN_IF_ERROR(Expect(id, PromptState::kQueued, "dispatch"));
  PromptRecord& r = records_.at(id);
  Move(r, PromptState::kInFlight);
  r.worker = worker;
  return ++r.attempt;
}

bool PromptLedger::Requeue(int64_t id) {
  auto it = records_.find(id);
  if (it == records_.end() || it->second.state != PromptState::kInFlight) return false;
  Move(it->second, PromptState::kQueued);
  it->second.worker = -1;
  ++requeued_;
  return true;
}

std::vector<int64_t> PromptLedger::RequeueWorker(int worker) {
  std::vector<int64_t> ids;
  for (auto& [id, r] : records_) {
    if (r.state == PromptState::kInFlight && r.worker == worker) ids.push_back(id);
  }
  for (int64_t id : ids) Requeue(id);
  return ids;
}

absl::Status PromptLedger::Complete(int64_t id, int64_t attempt, int worker) {
  TIDAL_RETURN_IF_ERROR(Expect(id, PromptState::kInFlight, "complete"));
  PromptRecord& r = records_.at(id);
  if (r.attempt != attempt || r.worker != worker) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "prompt %d: result of attempt %d from device %d, but attempt %d is on device %d", id,
        attempt, worker, r.attempt, r.worker));
  }
  Move(r, PromptState::kStored);
  r.worker = -1;
  return absl::OkStatus();
}

absl::Status PromptLedger::Trained(int64_t id, int64_t step) {
  TIDAL_RETURN_IF_ERROR(Expect(id, PromptState::kStored, "trained"));
  PromptRecord& r = records_.at(id);
  Move(r, PromptState::kTrained);
  r.trained_step = step;
  return absl::OkStatus();
}

absl::Status PromptLedger::Drop(int64_t id, std::string reason) {
  auto it = records_.find(id);
  if (it == records_.end()) {
    return absl::NotFoundError(absl::StrFormat("prompt %d: drop: unknown id", id));
  }
  PromptRecord& r = it->second;
  if (r.state == PromptState::kTrained || r.state == PromptState::kDropped) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "prompt %d: drop (%s): already %s", id, reason, PromptStateName(r.state)));
  }
  Move(r, PromptState::kDropped);
  r.worker = -1;
  r.drop_reason = std::move(reason);
  return absl::OkStatus();
}

const PromptRecord* PromptLedger::Find(int64_t id) const {
  auto it = records_.find(id);
  return it == records_.end() ? nullptr : &it->second;
}

std::vector<int64_t> PromptLedger::InState(PromptState state) const {
  std::vector<int64_t> ids;
  for (const auto& [id, r] : records_) {
    if (r.state == state) ids.push_back(id);
  }
  return ids;
}

int64_t PromptLedger::Count(PromptState state) const { return counts_[static_cast<int>(state)]; }

LedgerSummary PromptLedger::Summary() const {
  LedgerSummary s;
  s.created = static_cast<int64_t>(records_.size());
  s.queued = Count(PromptState::kQueued);
  s.in_flight = Count(PromptState::kInFlight);
  s.stored = Count(PromptState::kStored);
  s.trained = Count(PromptState::kTrained);
  s.dropped = Count(PromptState::kDropped);
  s.requeued = requeued_;
  for (const auto& [id, r] : records_) {
    if (r.state == PromptState::kDropped) ++s.dropped_by_reason[r.drop_reason];
  }
  return s;
}

}  // namespace tidal::scheduler
