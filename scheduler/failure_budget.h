// FailureBudget: how many failures of one kind a run absorbs before it stops, as a named value
// (STYLE.md #10: failure policy in one place, with a budget, not an `if` in a handler).
//
// Two shapes: kConsecutive counts failures in a row and a success resets it (a flaky
// environment is fine, a dead one is not); kPerKey counts failures per key (a device, a weight
// version) and never resets. Past the limit, Record() returns one error that names the cause,
// the count, the last failure's detail and the recipe key that sets the limit, e.g.
//   env_errors: 200 prompts in a row failed (control.budget.env_errors = 200); last: env plugin
//   'builtin:x': score() returned ...
// The error is returned once per crossing; the caller stops the run with it.
//
// Contract: plain data, no I/O; one thread (the controller's loop).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/status.h"

namespace tidal::scheduler {

class FailureBudget {
 public:
  enum class Shape { kConsecutive, kPerKey };
  // `what` says what one failure is ("prompts in a row failed"); `knob` is the recipe key.
  FailureBudget(std::string name, std::string what, std::string knob, int64_t limit, Shape shape);

  // A failure (of `key`, for kPerKey). OK while within the budget; the error once it is spent.
  absl::Status Failure(const std::string& detail, int64_t key = 0);
  // A success: resets a kConsecutive count (no-op for kPerKey).
  void Success();
  // Forgets a key's count (kPerKey), e.g. once a weight version was applied.
  void Reset(int64_t key = 0);

  int64_t count(int64_t key = 0) const;  // current count (in a row, or of the key)
  int64_t total() const { return total_; }  // every failure ever recorded
  int64_t limit() const { return limit_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_, what_, knob_;
  int64_t limit_;
  Shape shape_;
  std::map<int64_t, int64_t> counts_;
  int64_t total_ = 0;
};

}  // namespace tidal::scheduler
