#include "scheduler/trajectory.h"

#include <algorithm>

#include "trainer/advantages.h"

namespace tidal::scheduler {

int64_t TrajectoryGroup::MinVersion() const {
  int64_t v = kNoVersion;
  for (const auto& s : samples) {
    for (int64_t x : s.versions) v = std::min(v, x);
  }
  return v;
}

int64_t TrajectoryGroup::MaxVersion() const {
  int64_t v = -1;
  for (const auto& s : samples) {
    for (int64_t x : s.versions) v = std::max(v, x);
  }
  return v;
}

int64_t TrajectoryGroup::ResponseTokens() const {
  int64_t n = 0;
  for (const auto& s : samples) n += static_cast<int64_t>(s.response_ids.size());
  return n;
}

double TrajectoryGroup::MeanReward() const {
  if (samples.empty()) return 0;
  double sum = 0;
  for (const auto& s : samples) sum += s.reward;
  return sum / static_cast<double>(samples.size());
}

bool TrajectoryGroup::RewardsAllEqual() const {
  std::vector<double> rewards;
  rewards.reserve(samples.size());
  for (const auto& s : samples) rewards.push_back(s.reward);
  return trainer::RewardsUniform(rewards);
}

}  // namespace tidal::scheduler
