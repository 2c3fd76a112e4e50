// Agent sessions -> train groups: how sessions that external agents ran through the
// OpenAI-compatible endpoint (rollout/openai_server.h) become GRPO groups in the trajectory store.
//
// Contract (the controller's event-loop thread only):
// - Add() puts a session into the open group of its `group` key. Sessions that name no group
//   share the "" key, so they are grouped in arrival order (the group mean is then a running
//   batch baseline rather than a per-task one).
// - Accounting: the first session of a group creates the group's ledger record and moves it in
//   flight on kAgentWorker (a pseudo-worker, so a dying rollout worker never requeues it as an
//   environment prompt); a group is Complete()d in the ledger when it holds `group_size`
//   sessions, and Add() returns it, ready for the store.
// - Each trajectory of a session (SessionTrajectories) is one sample of the group carrying the
//   session's reward: a multi-turn session that chains token-exactly is one sample; one whose
//   calls do not chain weighs as many samples as it has trajectories.
// - TakeOpen() removes the partially filled groups (run end) and returns their prompt ids, for
//   the caller to drop with a reason.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rollout/openai_server.h"
#include "scheduler/prompt_ledger.h"
#include "scheduler/protocol.h"
#include "scheduler/trajectory.h"

namespace tidal::scheduler {

// One session's calls -> its trajectories (reward, correct and text left for the caller). A call
// that continues the previous one token-exactly (its prompt is the previous prompt + sampled
// tokens + more) is merged into the same trajectory: the tokens in between (tool output, the
// next user turn) join the response with loss mask 0, so a multi-turn session trains as one
// sequence. A call that does not continue it (the agent rewrote the history, or asked afresh)
// starts a new trajectory. Recorded calls are in finishing order, which is the conversation
// order for an agent that waits for each reply.
std::vector<Trajectory> SessionTrajectories(const std::vector<rollout::RecordedCall>& calls);

class AgentGroups {
 public:
  static constexpr int kAgentWorker = -2;

  AgentGroups(PromptLedger* ledger, int group_size) : ledger_(ledger), group_size_(group_size) {}

  // Returns the groups this session completed (zero or one).
  absl::StatusOr<std::vector<TrajectoryGroup>> Add(AgentSession session, int device);
  std::vector<int64_t> TakeOpen();

  int64_t sessions() const { return sessions_; }
  int open_groups() const { return static_cast<int>(open_.size()); }

 private:
  struct Open {
    TrajectoryGroup group;  // group.attempt: the ledger attempt Complete() must echo
    int sessions = 0;
  };
  PromptLedger* ledger_;
  int group_size_;
  std::map<std::string, Open> open_;
  int64_t sessions_ = 0;
};

}  // namespace tidal::scheduler
