#include "scheduler/agent_groups.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

AgentSession Session(const std::string& id, const std::string& group, double reward, int trajectories = 1) {
  AgentSession s;
  s.session_id = id;
  s.group = group;
  s.reward = reward;
  for (int i = 0; i < trajectories; ++i) {
    Trajectory t;
    t.prompt_ids = {1, 2};
    t.response_ids = {3, 4, 5};
    t.versions = {0, 0, 1};
    t.reward = reward;
    s.trajectories.push_back(t);
  }
  return s;
}

TEST(AgentGroupsTest, SessionsOfOneGroupKeyFormOneLedgerAccountedGroup) {
  PromptLedger ledger;
  AgentGroups groups(&ledger, /*group_size=*/3);
  auto a = groups.Add(Session("a", "task-1", 1), 0);
  auto b = groups.Add(Session("b", "task-2", 0), 1);
  auto c = groups.Add(Session("c", "task-1", 0, /*trajectories=*/2), 1);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(a->empty() && b->empty() && c->empty());
  EXPECT_EQ(groups.open_groups(), 2);
  // Both groups are in the ledger from their first session on: in flight, not on a real worker.
  EXPECT_EQ(ledger.Count(PromptState::kInFlight), 2);
  EXPECT_TRUE(ledger.RequeueWorker(0).empty());
  EXPECT_TRUE(ledger.RequeueWorker(1).empty());

  auto d = groups.Add(Session("d", "task-1", 1), 0);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->size(), 1u);
  const TrajectoryGroup& g = d->front();
  EXPECT_EQ(g.samples.size(), 4u);  // 1 + 2 + 1 trajectories, each carrying its session's reward
  EXPECT_DOUBLE_EQ(g.samples[0].reward, 1);
  EXPECT_DOUBLE_EQ(g.samples[1].reward, 0);
  EXPECT_DOUBLE_EQ(g.samples[3].reward, 1);
  EXPECT_EQ(g.worker, 0);  // the device of the group's first session
  EXPECT_EQ(ledger.Find(g.prompt_id)->state, PromptState::kStored);
  EXPECT_EQ(groups.sessions(), 4);

  const std::vector<int64_t> open = groups.TakeOpen();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(groups.open_groups(), 0);
  ASSERT_TRUE(ledger.Drop(open[0], "agent_group_incomplete_at_run_end").ok());
  ASSERT_TRUE(ledger.Trained(g.prompt_id, 0).ok());
  EXPECT_EQ(ledger.Summary().unaccounted(), 0);
}

TEST(AgentGroupsTest, UngroupedSessionsGroupInArrivalOrder) {
  PromptLedger ledger;
  AgentGroups groups(&ledger, 2);
  EXPECT_TRUE(groups.Add(Session("a", "", 1), 0)->empty());
  auto b = groups.Add(Session("b", "", 0), 0);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ(b->front().samples.size(), 2u);
  EXPECT_TRUE(groups.Add(Session("c", "", 1), 0)->empty());
  EXPECT_EQ(ledger.created(), 2);
}

TEST(AgentGroupsTest, SessionWithoutCallsIsRefused) {
  PromptLedger ledger;
  AgentGroups groups(&ledger, 2);
  AgentSession empty;
  empty.session_id = "x";
  auto r = groups.Add(empty, 0);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("'x' has no trajectories"), std::string::npos);
  EXPECT_EQ(ledger.created(), 0);
}

}  // namespace
}  // namespace tidal::scheduler

namespace tidal::scheduler {
namespace {

rollout::RecordedCall Call(std::vector<int32_t> prompt, std::vector<int32_t> tokens, int64_t version) {
  rollout::RecordedCall c;
  c.prompt = std::move(prompt);
  c.tokens = std::move(tokens);
  c.logprobs.assign(c.tokens.size(), -0.5f);
  c.versions.assign(c.tokens.size(), version);
  c.finish_reason = "eos";
  return c;
}

TEST(SessionTrajectoriesTest, ChainedCallsMergeWithObservationsMasked) {
  // Turn 2's prompt = turn 1's prompt + its sampled tokens + an observation (7, 8).
  auto t = SessionTrajectories({Call({1, 2}, {3, 4}, 5), Call({1, 2, 3, 4, 7, 8}, {9}, 6)});
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].prompt_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(t[0].response_ids, (std::vector<int32_t>{3, 4, 7, 8, 9}));
  EXPECT_EQ(t[0].loss_mask, (std::vector<uint8_t>{1, 1, 0, 0, 1}));
  EXPECT_EQ(t[0].versions, (std::vector<int64_t>{5, 5, 5, 5, 6}));
  EXPECT_EQ(t[0].logprobs, (std::vector<float>{-0.5f, -0.5f, 0.0f, 0.0f, -0.5f}));
}

TEST(SessionTrajectoriesTest, CallsThatDoNotContinueStartNewTrajectories) {
  // The same question asked afresh, then a call whose history differs from what was sampled.
  auto t = SessionTrajectories({Call({1, 2}, {3}, 0), Call({1, 2}, {4}, 0), Call({1, 2, 9, 5}, {6}, 1)});
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[1].response_ids, (std::vector<int32_t>{4}));
  EXPECT_EQ(t[2].prompt_ids, (std::vector<int32_t>{1, 2, 9, 5}));
  EXPECT_EQ(t[2].loss_mask, (std::vector<uint8_t>{1}));
}

}  // namespace
}  // namespace tidal::scheduler
