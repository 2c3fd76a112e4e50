#include "scheduler/failure_budget.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

TEST(FailureBudgetTest, ConsecutiveFailuresStopAtTheLimitAndSuccessResets) {
  FailureBudget b("env_errors", "prompts in a row failed", "control.budget.env_errors", 3,
                  FailureBudget::Shape::kConsecutive);
  EXPECT_TRUE(b.Failure("a").ok());
  EXPECT_TRUE(b.Failure("b").ok());
  b.Success();
  EXPECT_EQ(b.count(), 0);
  EXPECT_TRUE(b.Failure("c").ok());
  EXPECT_TRUE(b.Failure("d").ok());
  absl::Status s = b.Failure("score() returned NaN");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "env_errors: 3 prompts in a row failed; the run stops (control.budget.env_errors = 3); last: score() "
            "returned NaN");
  EXPECT_TRUE(b.Failure("e").ok()) << "the error is returned once per crossing";
  EXPECT_EQ(b.total(), 6);  // a, b, c, d, the NaN and e
}

TEST(FailureBudgetTest, PerKeyCountsEachKeyAndAllowsTheLimit) {
  FailureBudget b("weight_resends", "re-sends of weight version", "control.budget.weight_resends", 2,
                  FailureBudget::Shape::kPerKey);
  EXPECT_TRUE(b.Failure("rejected", 7).ok());
  EXPECT_TRUE(b.Failure("rejected", 7).ok());
  EXPECT_TRUE(b.Failure("rejected", 8).ok());
  b.Success();  // no effect on per-key counts
  EXPECT_EQ(b.count(7), 2);
  absl::Status s = b.Failure("checksum mismatch", 7);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("weight_resends: 3 re-sends of weight version (7)"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("control.budget.weight_resends = 2"), absl::string_view::npos) << s;
  b.Reset(8);
  EXPECT_EQ(b.count(8), 0);
}

}  // namespace
}  // namespace tidal::scheduler
