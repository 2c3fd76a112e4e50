#include "scheduler/train_step.h"

#include <algorithm>

namespace tidal::scheduler {

AssembledStep AssembleTrainStep(const std::vector<TrajectoryGroup>& batch, int ranks, int64_t step,
                                int64_t version) {
  AssembledStep out;
  out.shares.resize(std::max(1, ranks));
  double reward = 0, correct = 0, samples = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const auto& g = batch[i];
    out.shares[i % out.shares.size()].groups.push_back({g.prompt_id, g.samples});
    int64_t mv = g.MinVersion();
    out.staleness_sum += mv == TrajectoryGroup::kNoVersion ? 0 : static_cast<double>(version - mv);
    for (const auto& s : g.samples) {
      reward += s.reward;
      correct += s.correct ? 1 : 0;
      samples += 1;
    }
  }
  for (auto& share : out.shares) share.step = step;
  out.staleness_mean = batch.empty() ? 0 : out.staleness_sum / static_cast<double>(batch.size());
  out.reward_mean = samples > 0 ? reward / samples : 0;
  out.accuracy = samples > 0 ? correct / samples : 0;
  return out;
}

double RateWindow::Rate(double now) {
  while (samples_.size() > 1 && now - samples_.front().first > window_s_) samples_.pop_front();
  if (samples_.size() < 2) return 0;
  double dt = samples_.back().first - samples_.front().first;
  if (dt < 1.0) return 0;
  return (samples_.back().second - samples_.front().second) / dt;
}

int64_t StepAccounting::OnGroup(const TrajectoryGroup& g, double now) {
  for (const auto& smp : g.samples) {
    const double n = static_cast<double>(smp.response_ids.size());
    response_len_sum += n;
    response_len_max = std::max(response_len_max, n);
    ++response_count;
  }
  const int64_t tokens = g.ResponseTokens();
  rollout_tokens += tokens;
  rollout_window.Add(now, rollout_tokens);
  return tokens;
}

void StepAccounting::OnBatch(const AssembledStep& s, int64_t groups, int64_t kept_unfiltered) {
  last_staleness = s.staleness_mean;
  last_kept_unfiltered = kept_unfiltered;
  staleness_sum += s.staleness_sum;
  staleness_groups += groups;
  last_reward = s.reward_mean;
  last_accuracy = s.accuracy;
}

}  // namespace tidal::scheduler
