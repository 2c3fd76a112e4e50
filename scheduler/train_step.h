// Train-step assembly and accounting: a batch of trajectory groups becomes one TrainStep share
// per train rank, and the run's training/rollout totals (staleness, reward, tokens, rates)
// accumulate here.
//
// Contract:
// - Owned and called by the controller's event-loop thread only.
// - Shares are dealt round-robin (group i -> rank i % ranks), so every rank gets a share (possibly
//   empty) and the sharded step stays in lock-step.
// - Staleness of a group = trained version - its oldest token's version (0 when it has no tokens).
#pragma once

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "scheduler/protocol.h"
#include "scheduler/trajectory.h"

namespace tidal::scheduler {

struct AssembledStep {
  std::vector<TrainStep> shares;  // one per train rank, in rank order
  double staleness_sum = 0;       // over the batch's groups
  double staleness_mean = 0;
  double reward_mean = 0;         // over the batch's samples
  double accuracy = 0;            // fraction of the batch's samples judged correct
};

AssembledStep AssembleTrainStep(const std::vector<TrajectoryGroup>& batch, int ranks, int64_t step,
                                int64_t version);

// Rollout tokens over a sliding window of (time, running total) samples.
class RateWindow {
 public:
  explicit RateWindow(double window_s = 20.0) : window_s_(window_s) {}
  void Add(double now, int64_t total) { samples_.emplace_back(now, total); }
  // Tokens per second over the window ending at `now`; 0 until it spans a second (the first
  // results would overstate the rate).
  double Rate(double now);

 private:
  double window_s_;
  std::deque<std::pair<double, int64_t>> samples_;
};

// The run's running totals, fed by finished groups and finished steps.
struct StepAccounting {
  int64_t rollout_tokens = 0;
  double response_len_sum = 0, response_len_max = 0;
  int64_t response_count = 0;
  int64_t train_tokens = 0;
  double train_seconds = 0;
  double staleness_sum = 0;
  int64_t staleness_groups = 0;
  // The last assembled batch.
  double last_reward = 0, last_accuracy = 0, last_staleness = 0;
  int64_t last_kept_unfiltered = 0;  // zero-variance groups the last batch kept (limit reached)
  RateWindow rollout_window;

  // A finished RL group entered the data flow at `now`; returns its response tokens.
  int64_t OnGroup(const TrajectoryGroup& g, double now);
  void OnBatch(const AssembledStep& s, int64_t groups, int64_t kept_unfiltered);
  void OnStepDone(int64_t tokens, double seconds) {
    train_tokens += tokens;
    train_seconds += seconds;
  }
  double train_tokens_per_s() const { return train_seconds > 0 ? train_tokens / train_seconds : 0; }
  double mean_staleness() const { return staleness_groups > 0 ? staleness_sum / staleness_groups : 0; }
  double response_tokens_mean() const { return response_count > 0 ? response_len_sum / response_count : 0; }
};

}  // namespace tidal::scheduler
