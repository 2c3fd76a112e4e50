// Plain-data trajectory types: what a rollout worker returns for a prompt and what the trainer
// consumes. They carry no behaviour beyond small read-only summaries, so every side (the store,
// agent groups, the wire protocol, train-step assembly) can include them without the store.
//
// Contract: value types, no threads, no ownership beyond their own vectors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tidal::scheduler {

// One sampled response to a prompt, with what training needs to check it.
struct Trajectory {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> response_ids;
  std::vector<float> logprobs;    // rollout logprob of each response token
  std::vector<int64_t> versions;  // policy version that sampled each response token
  // Per response token, 1 = trained on; empty = all. 0 marks tokens the policy did not sample
  // (an agent session's observations between its calls, scheduler/agent_groups.h).
  std::vector<uint8_t> loss_mask;
  double reward = 0;
  bool correct = false;           // the environment's exact-answer verdict
  std::string finish_reason;      // "eos" | "length" | "abort"
  std::string text;               // decoded response (for logs and eval dumps)
};

struct TrajectoryGroup {
  int64_t prompt_id = -1;
  int64_t attempt = 0;
  int worker = -1;
  std::vector<Trajectory> samples;
  double queue_seconds = 0;     // dispatch -> first scheduled on the engine
  double generate_seconds = 0;  // first scheduled -> last sample finished

  // Oldest policy version among the group's tokens (kNoVersion when it has no tokens).
  static constexpr int64_t kNoVersion = INT64_MAX;
  int64_t MinVersion() const;
  int64_t MaxVersion() const;
  int64_t ResponseTokens() const;
  double MeanReward() const;
  // DAPO zero variance (trainer/advantages.h RewardsUniform): the store filters these groups.
  bool RewardsAllEqual() const;
};

}  // namespace tidal::scheduler
