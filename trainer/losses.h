// RL and SFT objectives over the response tokens of one micro-batch.
//
// Contract:
// - Inputs are flat per-token tensors [K] over the micro-batch's response tokens (packed
//   sequences back to back), with seq_index [K] naming each token's sequence in the micro-batch.
// - Aggregation is expressed as per-token weights (AggregationWeights) built from *global*
//   normalisers (token / sequence counts of the whole optimizer step summed over all ranks and
//   micro-batches), so summing micro-batch losses and gradients over ranks with ReduceOp::kSum
//   gives exactly the full-batch objective. Every term (surrogate, KL, entropy) shares them.
// - Tensors that must not carry gradient (old/ref/rollout logprobs, advantages, IS weights) are
//   detached here; `logprobs` and `entropy` carry it.
// - Pure tensor functions (TORCH_CHECK on shape mismatches); stats are plain doubles, *sums*
//   over this micro-batch so the caller can add them across micro-batches and ranks.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "core/kl_estimator.h"
#include "core/status.h"

namespace tidal::trainer {

enum class PolicyLossType {
  kPpoClip,  // -min(r A, clip(r, 1-lo, 1+hi) A), r per token; DAPO clip-higher when hi > lo
  kGspo,     // same with the sequence-level ratio s = exp(mean_t log r_t) (GSPO-token form)
  kCispo,    // -sg(clip(r, 1-lo, 1+hi)) A log pi: clipped IS weight, gradient on every token
};
enum class LossAggregation {
  kTokenMean,         // sum over tokens / tokens in the step
  kSeqMeanTokenMean,  // mean over sequences of each sequence's token mean
  kSeqMeanTokenSum,   // Dr.GRPO: sum over tokens / (sequences in the step * max_len constant)
};

absl::StatusOr<PolicyLossType> ParsePolicyLossType(const std::string& name);   // ppo | gspo | cispo
absl::StatusOr<LossAggregation> ParseLossAggregation(const std::string& name);  // token_mean | seq_mean | drgrpo
absl::StatusOr<KlEstimator> ParseKlEstimator(const std::string& name);          // k1 | k2 | k3

struct PolicyLossConfig {
  PolicyLossType type = PolicyLossType::kPpoClip;
  double clip_low = 0.2;   // ratio floor 1 - clip_low
  double clip_high = 0.28;  // ratio ceiling 1 + clip_high
  LossAggregation aggregation = LossAggregation::kTokenMean;
  double max_len = 0.0;  // Dr.GRPO constant (usually max response tokens); required for kSeqMeanTokenSum
  double kl_coef = 0.0;
  KlEstimator kl_estimator = KlEstimator::kK3;
  double entropy_coef = 0.0;
};

// Step-wide normalisers (summed over all ranks and micro-batches of the optimizer step).
struct LossNormalizers {
  double tokens = 0.0;     // unmasked response tokens
  double sequences = 0.0;  // trained sequences
};

// Per-token weights w [K] with loss = sum_t w_t * l_t implementing `agg` (0 on masked tokens).
// seq_lengths [S] = unmasked tokens per sequence of this micro-batch.
at::Tensor AggregationWeights(const at::Tensor& mask, const at::Tensor& seq_index, const at::Tensor& seq_lengths,
                              LossAggregation agg, const LossNormalizers& norm, double max_len);

struct PolicyLossInput {
  at::Tensor logprobs;      // [K] current policy (grad)
  at::Tensor old_logprobs;  // [K] ratio denominator (proximal or behaviour policy)
  at::Tensor advantages;    // [K]
  at::Tensor mask;          // [K] float 0/1
  at::Tensor seq_index;     // [K] int64 in [0, num_seqs)
  int64_t num_seqs = 0;
  at::Tensor weights;       // [K] aggregation weights (AggregationWeights)
  at::Tensor is_weights;    // [K] optional TIS/MIS correction (see rollout_correction.h)
  at::Tensor entropy;       // [K] optional (grad), needed when entropy_coef != 0
  at::Tensor ref_logprobs;  // [K] optional, needed when kl_coef != 0
};

struct PolicyLossOutput {
  at::Tensor loss;  // scalar: this micro-batch's share of the step objective
  // Sums over unmasked tokens of this micro-batch (divide by the step's token count).
  double policy_loss = 0.0;  // weighted surrogate term (already normalised, adds up to the step's)
  double kl_term = 0.0;      // weighted KL term (normalised like policy_loss), before kl_coef
  double entropy_term = 0.0;  // weighted entropy (normalised), before entropy_coef
  double clipped_tokens = 0.0;
  double kl_sum = 0.0;        // sum of per-token KL estimates
  double entropy_sum = 0.0;   // sum of per-token entropies (0 if not given)
  double tokens = 0.0;
};

PolicyLossOutput PolicyLoss(const PolicyLossConfig& c, const PolicyLossInput& in);

// Per-token KL(pi || ref) estimate from samples of pi: k1 = log pi - log ref,
// k2 = (log pi - log ref)^2 / 2, k3 = exp(log ref - log pi) - (log ref - log pi) - 1.
at::Tensor KlPenalty(const at::Tensor& logprobs, const at::Tensor& ref_logprobs, KlEstimator est);

// SFT: -sum_t w_t log p(target_t) with w from AggregationWeights (token mean for SFT).
at::Tensor MaskedCrossEntropy(const at::Tensor& logprobs, const at::Tensor& weights);

}  // namespace tidal::trainer
