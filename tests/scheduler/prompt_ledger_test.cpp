#include "scheduler/prompt_ledger.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

TEST(PromptLedgerTest, TracesAPromptToTrained) {
  PromptLedger l;
  int64_t id = l.Create(42);
  EXPECT_EQ(l.NextQueued(), id);
  auto attempt = l.Dispatch(id, 1);
  ASSERT_TRUE(attempt.ok());
  EXPECT_EQ(*attempt, 1);
  EXPECT_EQ(l.NextQueued(), -1);
  ASSERT_TRUE(l.Complete(id, 1, 1).ok());
  ASSERT_TRUE(l.Trained(id, 7).ok());
  EXPECT_EQ(l.Find(id)->trained_step, 7);
  LedgerSummary s = l.Summary();
  EXPECT_EQ(s.created, 1);
  EXPECT_EQ(s.trained, 1);
  EXPECT_EQ(s.unaccounted(), 0);
}

TEST(PromptLedgerTest, DeadWorkerRequeuesAndLateAnswerIsRefused) {
  PromptLedger l;
  int64_t a = l.Create(1), b = l.Create(2), c = l.Create(3);
  ASSERT_TRUE(l.Dispatch(a, 0).ok());
  ASSERT_TRUE(l.Dispatch(b, 1).ok());
  ASSERT_TRUE(l.Dispatch(c, 1).ok());
  EXPECT_EQ(l.RequeueWorker(1), (std::vector<int64_t>{b, c}));
  EXPECT_EQ(l.Count(PromptState::kQueued), 2);
  EXPECT_EQ(l.NextQueued(), b);  // oldest first
  auto again = l.Dispatch(b, 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 2);
  // The dead worker's answer for attempt 1 must not count.
  EXPECT_FALSE(l.Complete(b, 1, 1).ok());
  EXPECT_TRUE(l.Complete(b, 2, 0).ok());
  EXPECT_EQ(l.Summary().requeued, 2);
  EXPECT_EQ(l.Summary().unaccounted(), 3);  // a in flight, b stored, c queued
}

TEST(PromptLedgerTest, DropsCarryReasonsAndTerminalStatesAreFinal) {
  PromptLedger l;
  int64_t a = l.Create(1), b = l.Create(2);
  ASSERT_TRUE(l.Drop(a, "stale").ok());
  ASSERT_TRUE(l.Dispatch(b, 0).ok());
  ASSERT_TRUE(l.Drop(b, "aborted_at_run_end").ok());
  EXPECT_FALSE(l.Drop(a, "again").ok());
  EXPECT_FALSE(l.Dispatch(a, 0).ok());
  EXPECT_FALSE(l.Trained(b, 0).ok());
  LedgerSummary s = l.Summary();
  EXPECT_EQ(s.dropped, 2);
  EXPECT_EQ(s.dropped_by_reason.at("stale"), 1);
  EXPECT_EQ(s.dropped_by_reason.at("aborted_at_run_end"), 1);
  EXPECT_EQ(s.unaccounted(), 0);
  EXPECT_FALSE(l.Requeue(b));
}

TEST(PromptLedgerTest, UnknownIdsAreErrors) {
  PromptLedger l;
  EXPECT_EQ(l.Dispatch(5, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(l.Complete(5, 1, 0).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(l.Drop(5, "x").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tidal::scheduler
