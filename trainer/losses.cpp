#include "trainer/losses.h"

#include "absl/strings/str_cat.h"

namespace tidal::trainer {

absl::StatusOr<PolicyLossType> ParsePolicyLossType(const std::string& name) {
  if (name == "ppo" || name == "grpo" || name == "dapo") return PolicyLossType::kPpoClip;
  if (name == "gspo") return PolicyLossType::kGspo;
  if (name == "cispo") return PolicyLossType::kCispo;
  return absl::InvalidArgumentError(absl::StrCat("unknown policy loss '", name, "': expected ppo, gspo or cispo"));
}

absl::StatusOr<LossAggregation> ParseLossAggregation(const std::string& name) {
  if (name == "token_mean") return LossAggregation::kTokenMean;
  if (name == "seq_mean" || name == "seq_mean_token_mean") return LossAggregation::kSeqMeanTokenMean;
  if (name == "drgrpo" || name == "seq_mean_token_sum_norm") return LossAggregation::kSeqMeanTokenSum;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown loss aggregation '", name, "': expected token_mean, seq_mean or drgrpo"));
}

absl::StatusOr<KlEstimator> ParseKlEstimator(const std::string& name) {
  if (name == "k1") return KlEstimator::kK1;
  if (name == "k2") return KlEstimator::kK2;
  if (name == "k3" || name == "low_var_kl") return KlEstimator::kK3;
  return absl::InvalidArgumentError(absl::StrCat("unknown KL estimator '", name, "': expected k1, k2 or k3"));
}

at::Tensor AggregationWeights(const at::Tensor& mask, const at::Tensor& seq_index, const at::Tensor& seq_lengths,
                              LossAggregation agg, const LossNormalizers& norm, double max_len) {
  TORCH_CHECK(mask.dim() == 1 && seq_index.sizes() == mask.sizes(), "AggregationWeights: mask ", mask.sizes(),
              " and seq_index ", seq_index.sizes(), " must be equal 1-D shapes");
  at::Tensor m = mask.to(at::kFloat);
  switch (agg) {
    case LossAggregation::kTokenMean:
      TORCH_CHECK(norm.tokens > 0, "token-mean aggregation needs a positive step token count");
      return m / norm.tokens;
    case LossAggregation::kSeqMeanTokenMean: {
      TORCH_CHECK(norm.sequences > 0, "seq-mean aggregation needs a positive step sequence count");
      at::Tensor len = seq_lengths.to(at::kFloat).clamp_min(1.0).index_select(0, seq_index);
      return m / (len * norm.sequences);
    }
    case LossAggregation::kSeqMeanTokenSum:
      TORCH_CHECK(norm.sequences > 0, "Dr.GRPO aggregation needs a positive step sequence count");
      TORCH_CHECK(max_len > 0, "Dr.GRPO aggregation needs max_len > 0 (the constant token-sum divisor)");
      return m / (max_len * norm.sequences);
  }
  TORCH_CHECK(false, "unknown aggregation");
}

at::Tensor KlPenalty(const at::Tensor& logprobs, const at::Tensor& ref_logprobs, KlEstimator est) {
  at::Tensor d = logprobs - ref_logprobs.detach();  // log pi - log ref
  switch (est) {
    case KlEstimator::kK1: return d;
    case KlEstimator::kK2: return 0.5 * d * d;
    case KlEstimator::kK3: return at::exp(-d) + d - 1.0;
  }
  TORCH_CHECK(false, "unknown KL estimator");
}

PolicyLossOutput PolicyLoss(const PolicyLossConfig& c, const PolicyLossInput& in) {
  const int64_t k = in.logprobs.numel();
  for (const at::Tensor* t : {&in.old_logprobs, &in.advantages, &in.mask, &in.seq_index, &in.weights}) {
    TORCH_CHECK(t->defined() && t->numel() == k, "PolicyLoss: every per-token input needs ", k, " elements");
  }
  const at::Tensor lp = in.logprobs.to(at::kFloat);
  const at::Tensor old = in.old_logprobs.detach().to(at::kFloat);
  const at::Tensor adv = in.advantages.detach().to(at::kFloat);
  const at::Tensor mask = in.mask.detach().to(at::kFloat);
  const at::Tensor w = in.weights.detach().to(at::kFloat);
  const double lo = 1.0 - c.clip_low, hi = 1.0 + c.clip_high;

  at::Tensor per_token;  // surrogate loss per token (to be minimised)
  at::Tensor clipped;    // bool per token: the clipped branch was active
  const at::Tensor log_ratio = lp - old;
  switch (c.type) {
    case PolicyLossType::kPpoClip: {
      at::Tensor ratio = at::exp(log_ratio);
      at::Tensor unclipped = ratio * adv;
      at::Tensor clipped_obj = at::clamp(ratio, lo, hi) * adv;
      per_token = -at::minimum(unclipped, clipped_obj);
      clipped = (clipped_obj < unclipped).detach();
      break;
    }
    case PolicyLossType::kGspo: {
      // s_i = exp(mean over the sequence's unmasked tokens of log r); per token
      // s_it = sg(s_i) * pi_t / sg(pi_t): value s_i, gradient (s_i / |y_i|-weighted) on each token.
      at::Tensor seq_sum = at::zeros({in.num_seqs}, lp.options()).index_add(0, in.seq_index, (log_ratio * mask).detach());
      at::Tensor seq_len = at::zeros({in.num_seqs}, lp.options()).index_add(0, in.seq_index, mask).clamp_min(1.0);
      at::Tensor seq_log_ratio = (seq_sum / seq_len).index_select(0, in.seq_index);
      at::Tensor ratio = at::exp(seq_log_ratio + lp - lp.detach());
      at::Tensor unclipped = ratio * adv;
      at::Tensor clipped_obj = at::clamp(ratio, lo, hi) * adv;
      per_token = -at::minimum(unclipped, clipped_obj);
      clipped = (clipped_obj < unclipped).detach();
      break;
    }
    case PolicyLossType::kCispo: {
      at::Tensor ratio = at::exp(log_ratio).detach();
      at::Tensor weight = at::clamp(ratio, lo, hi);
      per_token = -(weight * adv * lp);
      clipped = (weight != ratio);
      break;
    }
  }
  if (in.is_weights.defined()) {
    TORCH_CHECK(in.is_weights.numel() == k, "PolicyLoss: is_weights needs ", k, " elements");
    per_token = per_token * in.is_weights.detach().to(at::kFloat);
  }
  PolicyLossOutput out;
  at::Tensor policy_loss = (per_token * w).sum();
  at::Tensor loss = policy_loss;
  out.policy_loss = policy_loss.item<double>();
  out.clipped_tokens = (clipped.to(at::kFloat) * mask).sum().item<double>();
  out.tokens = mask.sum().item<double>();
  if (c.kl_coef != 0.0) {
    TORCH_CHECK(in.ref_logprobs.defined() && in.ref_logprobs.numel() == k, "PolicyLoss: kl_coef ", c.kl_coef,
                " needs ref_logprobs with ", k, " elements");
    at::Tensor kl = KlPenalty(lp, in.ref_logprobs.to(at::kFloat), c.kl_estimator);
    at::Tensor kl_term = (kl * w).sum();
    loss = loss + c.kl_coef * kl_term;
    out.kl_term = kl_term.item<double>();
    out.kl_sum = (kl.detach() * mask).sum().item<double>();
  }
  if (in.entropy.defined()) {
    at::Tensor ent = in.entropy.to(at::kFloat);
    at::Tensor ent_term = (ent * w).sum();
    if (c.entropy_coef != 0.0) loss = loss - c.entropy_coef * ent_term;
    out.entropy_term = ent_term.item<double>();
    out.entropy_sum = (ent.detach() * mask).sum().item<double>();
  } else {
    TORCH_CHECK(c.entropy_coef == 0.0, "PolicyLoss: entropy_coef needs per-token entropy");
  }
  out.loss = loss;
  return out;
}

at::Tensor MaskedCrossEntropy(const at::Tensor& logprobs, const at::Tensor& weights) {
  TORCH_CHECK(logprobs.numel() == weights.numel(), "MaskedCrossEntropy: ", logprobs.numel(), " logprobs vs ",
              weights.numel(), " weights");
  return -(logprobs.to(at::kFloat) * weights.detach().to(at::kFloat)).sum();
}

}  // namespace tidal::trainer
