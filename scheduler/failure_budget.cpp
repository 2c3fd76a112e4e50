#include "scheduler/failure_budget.h"

#include "absl/strings/str_cat.h"

namespace tidal::scheduler {

FailureBudget::FailureBudget(std::string name, std::string what, std::string knob, int64_t limit, Shape shape)
    : name_(std::move(name)), what_(std::move(what)), knob_(std::move(knob)), limit_(limit), shape_(shape) {}

absl::Status FailureBudget::Failure(const std::string& detail, int64_t key) {
  ++total_;
  int64_t& n = counts_[shape_ == Shape::kConsecutive ? 0 : key];
  ++n;
  if (n != limit_ + (shape_ == Shape::kPerKey ? 1 : 0)) return absl::OkStatus();
  // kConsecutive: the limit-th failure in a row stops; kPerKey: the one past the limit (a limit
  // of 5 re-sends allows 5).
  return absl::ResourceExhaustedError(absl::StrCat(
      name_, ": ", n, " ", what_, shape_ == Shape::kPerKey ? absl::StrCat(" (", key, ")") : std::string(),
      "; the run stops (", knob_, " = ", limit_, "); last: ", detail));
}

void FailureBudget::Success() {
  if (shape_ == Shape::kConsecutive) counts_.clear();
}

void FailureBudget::Reset(int64_t key) { counts_.erase(shape_ == Shape::kConsecutive ? 0 : key); }

int64_t FailureBudget::count(int64_t key) const {
  auto it = counts_.find(shape_ == Shape::kConsecutive ? 0 : key);
  return it == counts_.end() ? 0 : it->second;
}

}  // namespace tidal::scheduler
