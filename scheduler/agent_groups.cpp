#include "scheduler/agent_groups.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace tidal::scheduler {

std::vector<Trajectory> SessionTrajectories(const std::vector<rollout::RecordedCall>& calls) {
  std::vector<Trajectory> out;
  for (const rollout::RecordedCall& c : calls) {
    if (!out.empty()) {
      Trajectory& t = out.back();
      const size_t so_far = t.prompt_ids.size() + t.response_ids.size();
      const bool continues =
          c.prompt.size() >= so_far &&
          std::equal(t.prompt_ids.begin(), t.prompt_ids.end(), c.prompt.begin()) &&
          std::equal(t.response_ids.begin(), t.response_ids.end(), c.prompt.begin() + t.prompt_ids.size());
      if (continues) {
        // Observation tokens: not sampled, not trained; they keep the last sampled version so
        // that staleness is measured on what the policy produced.
        const int64_t version = t.versions.empty() ? 0 : t.versions.back();
        for (size_t i = so_far; i < c.prompt.size(); ++i) {
          t.response_ids.push_back(c.prompt[i]);
          t.logprobs.push_back(0.0f);
          t.versions.push_back(version);
          t.loss_mask.push_back(0);
        }
        t.response_ids.insert(t.response_ids.end(), c.tokens.begin(), c.tokens.end());
        t.logprobs.insert(t.logprobs.end(), c.logprobs.begin(), c.logprobs.end());
        t.versions.insert(t.versions.end(), c.versions.begin(), c.versions.end());
        t.loss_mask.insert(t.loss_mask.end(), c.tokens.size(), 1);
        t.finish_reason = c.finish_reason;
        continue;
      }
    }
    Trajectory t;
    t.prompt_ids = c.prompt;
    t.response_ids = c.tokens;
    t.logprobs = c.logprobs;
    t.versions = c.versions;
    t.loss_mask.assign(c.tokens.size(), 1);
    t.finish_reason = c.finish_reason;
    out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<std::vector<TrajectoryGroup>> AgentGroups::Add(AgentSession session, int device) {
  if (session.trajectories.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("agent session '", session.session_id, "' has no trajectories"));
  }
  ++sessions_;
  auto it = open_.find(session.group);
  if (it == open_.end()) {
    Open o;
    o.group.prompt_id = ledger_->Create(/*task_seed=*/0);
    TIDAL_ASSIGN_OR_RETURN(o.group.attempt, ledger_->Dispatch(o.group.prompt_id, kAgentWorker));
    o.group.worker = device;
    it = open_.emplace(session.group, std::move(o)).first;
  }
  Open& o = it->second;
  for (Trajectory& t : session.trajectories) o.group.samples.push_back(std::move(t));
  if (++o.sessions < group_size_) return std::vector<TrajectoryGroup>{};
  TIDAL_RETURN_IF_ERROR(ledger_->Complete(o.group.prompt_id, o.group.attempt, kAgentWorker));
  std::vector<TrajectoryGroup> done;
  done.push_back(std::move(o.group));
  open_.erase(it);
  return done;
}

std::vector<int64_t> AgentGroups::TakeOpen() {
  std::vector<int64_t> ids;
  for (const auto& [key, o] : open_) ids.push_back(o.group.prompt_id);
  open_.clear();
  return ids;
}

}  // namespace tidal::scheduler
