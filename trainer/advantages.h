// Advantage estimators for outcome rewards (one scalar reward per sequence), and DAPO dynamic
// sampling. Torch-free plain vectors: one entry per sample; the controller may call these too.
//
// Contract:
// - GRPO / RLOO need every member of a group in the same call (groups are never split across
//   train ranks); REINFORCE++ normalises over the whole batch, which may span ranks: pass the
//   global moments (BatchMoments summed over ranks) to Whiten.
// - Pure functions; no state.
// - A value head / GAE (token-level rewards and values) would add an estimator taking per-token
//   values; AdvantageEstimator and ComputeAdvantages are where it plugs in (not built yet).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tidal::trainer {

enum class AdvantageEstimator {
  kGrpo,                 // (r - group mean) [/ group std]
  kRloo,                 // r - mean of the other group members
  kReinforcePlusPlus,    // (r - batch mean) / batch std
  kReinforcePlusPlusBaseline,  // r - group mean, then whitened over the batch
};
absl::StatusOr<AdvantageEstimator> ParseAdvantageEstimator(const std::string& name);  // "grpo", "rloo", "reinforce++", "reinforce++_baseline"

struct AdvantageOptions {
  AdvantageEstimator estimator = AdvantageEstimator::kGrpo;
  bool grpo_scale_by_std = true;  // false: Dr.GRPO (no std division)
  double eps = 1e-6;              // added to std
};

// GRPO: a_i = (r_i - mean_g) / (std_g + eps) with the unbiased (n-1) group std, or r_i - mean_g
// when !scale_by_std. A group of one gets 0.
std::vector<double> GroupNormalizedAdvantages(const std::vector<double>& rewards, const std::vector<int64_t>& groups,
                                              bool scale_by_std, double eps);
// RLOO: a_i = r_i - (sum_g - r_i) / (n - 1). A group of one gets 0.
std::vector<double> RlooAdvantages(const std::vector<double>& rewards, const std::vector<int64_t>& groups);
// r_i - mean of its group.
std::vector<double> GroupMeanBaseline(const std::vector<double>& rewards, const std::vector<int64_t>& groups);

// Sufficient statistics for batch whitening; add them across ranks.
struct BatchMoments {
  double sum = 0.0, sum_sq = 0.0, count = 0.0;
  static BatchMoments Of(const std::vector<double>& values);
  double Mean() const { return count > 0 ? sum / count : 0.0; }
  double Std() const;  // unbiased; 0 for fewer than two values
};
// (v - mean) / (std + eps) with the given (usually global) moments.
std::vector<double> Whiten(const std::vector<double>& values, const BatchMoments& moments, double eps);

// Per-sample advantages from rewards. For REINFORCE++ variants, `global` are the moments of
// the values being whitened summed over all ranks (rewards for kReinforcePlusPlus, group-centred
// rewards for the baseline variant; get them with PreWhitenValues + BatchMoments::Of); pass
// nullptr on a single rank.
std::vector<double> PreWhitenValues(const AdvantageOptions& o, const std::vector<double>& rewards,
                                    const std::vector<int64_t>& groups);
std::vector<double> ComputeAdvantages(const AdvantageOptions& o, const std::vector<double>& rewards,
                                      const std::vector<int64_t>& groups, const BatchMoments* global);

// DAPO's zero-variance test, the one definition of it: both FilterUniformGroups below and the
// controller's trajectory store (scheduler/trajectory_store.cpp, through
// TrajectoryGroup::RewardsAllEqual) apply it. Rewards spanning no more than `tol` give every
// sample of the group the same group-relative advantage, hence no gradient.
constexpr double kUniformRewardTol = 1e-9;
bool RewardsUniform(std::span<const double> rewards, double tol = kUniformRewardTol);

// DAPO dynamic sampling: keeps samples whose group's rewards are not RewardsUniform; groups of
// one sample are dropped too (they carry no signal under group baselines).
struct DynamicSamplingResult {
  std::vector<size_t> kept;  // indices into the input, in input order
  int64_t kept_groups = 0;
  int64_t dropped_groups = 0;
  int64_t dropped_samples = 0;
};
DynamicSamplingResult FilterUniformGroups(const std::vector<double>& rewards, const std::vector<int64_t>& groups,
                                          double tol = kUniformRewardTol);

}  // namespace tidal::trainer
