// Train/rollout mismatch: the rollout engine and the trainer compute the same tokens' logprobs
// with different kernels (and, off-policy, different weights). This measures the gap every step
// and turns it into importance-sampling corrections of the policy loss.
//
// Contract: inputs are per-token [K] fp32 tensors of one micro-batch (no gradient); stats are
// sums over tokens with mask == 1 (and a max), so callers add them across micro-batches/ranks.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "core/status.h"

namespace tidal::trainer {

enum class IsCorrection {
  kNone,
  kTis,  // truncated IS: w = min(pi_train / pi_rollout, cap)
  kMis,  // masked IS: w = pi_train / pi_rollout, and 0 (token dropped) where it exceeds cap
};
absl::StatusOr<IsCorrection> ParseIsCorrection(const std::string& name);  // none | tis | mis

struct MismatchStats {
  double tokens = 0.0;          // tokens measured (mask == 1)
  double kl_sum = 0.0;          // sum of k3 estimates of KL(rollout || trainer)
  double max_abs_diff = 0.0;    // max |log pi_train - log pi_rollout|
  double weight_sum = 0.0;      // sum of applied IS weights
  double masked_tokens = 0.0;   // MIS: tokens zeroed
  void Add(const MismatchStats& o);
};

// Per-token k3 estimate of KL(rollout || trainer) from samples of the rollout policy:
// with d = log pi_train - log pi_rollout, k3 = exp(d) - d - 1 (non-negative, unbiased).
at::Tensor MismatchKl(const at::Tensor& trainer_logprobs, const at::Tensor& rollout_logprobs);

// IS weights [K] (1 where no correction); fills `stats` (may be null).
at::Tensor ImportanceWeights(const at::Tensor& trainer_logprobs, const at::Tensor& rollout_logprobs,
                             const at::Tensor& mask, IsCorrection kind, double cap, MismatchStats* stats);

}  // namespace tidal::trainer
