#include "trainer/advantages.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"

namespace tidal::trainer {
namespace {

struct GroupSums {
  double sum = 0.0, sum_sq = 0.0;
  int64_t n = 0;
};

std::map<int64_t, GroupSums> SumByGroup(const std::vector<double>& rewards, const std::vector<int64_t>& groups) {
  std::map<int64_t, GroupSums> g;
  for (size_t i = 0; i < rewards.size(); ++i) {
    GroupSums& s = g[groups.at(i)];
    s.sum += rewards[i];
    s.sum_sq += rewards[i] * rewards[i];
    s.n += 1;
  }
  return g;
}

double UnbiasedStd(double sum, double sum_sq, double n) {
  if (n < 2) return 0.0;
  const double mean = sum / n;
  const double var = std::max(0.0, (sum_sq - n * mean * mean) / (n - 1));
  return std::sqrt(var);
}

}  // namespace

absl::StatusOr<AdvantageEstimator> ParseAdvantageEstimator(const std::string& name) {
  if (name == "grpo") return AdvantageEstimator::kGrpo;
  if (name == "rloo") return AdvantageEstimator::kRloo;
  if (name == "reinforce++") return AdvantageEstimator::kReinforcePlusPlus;
  if (name == "reinforce++_baseline") return AdvantageEstimator::kReinforcePlusPlusBaseline;
  return absl::InvalidArgumentError(absl::StrCat("unknown advantage estimator '", name,
                                                 "': expected grpo, rloo, reinforce++ or reinforce++_baseline"));
}

std::vector<double> GroupNormalizedAdvantages(const std::vector<double>& rewards, const std::vector<int64_t>& groups,
                                              bool scale_by_std, double eps) {
  auto g = SumByGroup(rewards, groups);
  std::vector<double> a(rewards.size());
  for (size_t i = 0; i < rewards.size(); ++i) {
    const GroupSums& s = g.at(groups[i]);
    if (s.n < 2) continue;
    a[i] = rewards[i] - s.sum / s.n;
    if (scale_by_std) a[i] /= UnbiasedStd(s.sum, s.sum_sq, s.n) + eps;
  }
  return a;
}

std::vector<double> RlooAdvantages(const std::vector<double>& rewards, const std::vector<int64_t>& groups) {
  auto g = SumByGroup(rewards, groups);
  std::vector<double> a(rewards.size());
  for (size_t i = 0; i < rewards.size(); ++i) {
    const GroupSums& s = g.at(groups[i]);
    if (s.n < 2) continue;
    a[i] = rewards[i] - (s.sum - rewards[i]) / (s.n - 1);
  }
  return a;
}

std::vector<double> GroupMeanBaseline(const std::vector<double>& rewards, const std::vector<int64_t>& groups) {
  auto g = SumByGroup(rewards, groups);
  std::vector<double> a(rewards.size());
  for (size_t i = 0; i < rewards.size(); ++i) {
    const GroupSums& s = g.at(groups[i]);
    a[i] = rewards[i] - s.sum / s.n;
  }
  return a;
}

BatchMoments BatchMoments::Of(const std::vector<double>& values) {
  BatchMoments m;
  for (double v : values) {
    m.sum += v;
    m.sum_sq += v * v;
    m.count += 1;
  }
  return m;
}

double BatchMoments::Std() const { return UnbiasedStd(sum, sum_sq, count); }

std::vector<double> Whiten(const std::vector<double>& values, const BatchMoments& m, double eps) {
  std::vector<double> out(values.size());
  const double mean = m.Mean(), denom = m.Std() + eps;
  for (size_t i = 0; i < values.size(); ++i) out[i] = (values[i] - mean) / denom;
  return out;
}

std::vector<double> PreWhitenValues(const AdvantageOptions& o, const std::vector<double>& rewards,
                                    const std::vector<int64_t>& groups) {
  if (o.estimator == AdvantageEstimator::kReinforcePlusPlusBaseline) return GroupMeanBaseline(rewards, groups);
  return rewards;
}

std::vector<double> ComputeAdvantages(const AdvantageOptions& o, const std::vector<double>& rewards,
                                      const std::vector<int64_t>& groups, const BatchMoments* global) {
  switch (o.estimator) {
    case AdvantageEstimator::kGrpo: return GroupNormalizedAdvantages(rewards, groups, o.grpo_scale_by_std, o.eps);
    case AdvantageEstimator::kRloo: return RlooAdvantages(rewards, groups);
    case AdvantageEstimator::kReinforcePlusPlus:
    case AdvantageEstimator::kReinforcePlusPlusBaseline: {
      std::vector<double> v = PreWhitenValues(o, rewards, groups);
      const BatchMoments m = global ? *global : BatchMoments::Of(v);
      return Whiten(v, m, o.eps);
    }
  }
  return {};
}

bool RewardsUniform(std::span<const double> rewards, double tol) {
  if (rewards.empty()) return true;
  const auto [lo, hi] = std::minmax_element(rewards.begin(), rewards.end());
  return *hi - *lo <= tol;
}

DynamicSamplingResult FilterUniformGroups(const std::vector<double>& rewards, const std::vector<int64_t>& groups,
                                          double tol) {
  std::map<int64_t, std::vector<double>> by_group;
  for (size_t i = 0; i < rewards.size(); ++i) by_group[groups.at(i)].push_back(rewards[i]);
  DynamicSamplingResult r;
  std::set<int64_t> keep;
  for (const auto& [g, group_rewards] : by_group) {
    if (group_rewards.size() >= 2 && !RewardsUniform(group_rewards, tol)) {
      keep.insert(g);
      r.kept_groups++;
    } else {
      r.dropped_groups++;
    }
  }
  for (size_t i = 0; i < rewards.size(); ++i) {
    if (keep.count(groups[i])) {
      r.kept.push_back(i);
    } else {
      r.dropped_samples++;
    }
  }
  return r;
}

}  // namespace tidal::trainer
