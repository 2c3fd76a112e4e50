// Plain data exchanged between the controller, the data plane and the trainer: what one trained
// trajectory carries in, and what one optimizer step reports out. Torch-free on purpose (the
// controller and message code include it).
//
// Conventions: token ids are int32; logprobs are natural-log fp32 of the sampled token under the
// sampling distribution (temperature applied), one per response token; a response token at index
// j is predicted from prompt + response[0..j). Every per-response-token vector is either empty
// (unknown) or exactly response_ids.size() long; Trainer::TrainStep rejects anything else.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tidal::trainer {

struct TrainSample {
  std::vector<int32_t> prompt_ids;    // at least one token
  std::vector<int32_t> response_ids;  // tokens the policy produced (and env tokens, masked below)
  std::vector<float> rollout_logprobs;   // per response token; empty = not recorded
  std::vector<int64_t> policy_versions;  // per response token: weights version that sampled it
  std::vector<uint8_t> loss_mask;        // per response token, 1 = train on it; empty = all 1
  float reward = 0.0f;
  std::optional<float> advantage;  // set: used as is (every token); unset: estimated from rewards
  int64_t group_id = -1;           // samples of one prompt share it (GRPO / RLOO groups)
};

// Supervised sample: cross-entropy on target_ids given prompt_ids (target tokens masked by
// loss_mask when given).
struct SftSample {
  std::vector<int32_t> prompt_ids;  // at least one token
  std::vector<int32_t> target_ids;
  std::vector<uint8_t> loss_mask;  // per target token; empty = all 1
};

// What one TrainStep / SftStep did, reduced over all train ranks (identical on every rank).
struct StepStats {
  int64_t step = 0;             // optimizer steps taken so far (== new policy version)
  double loss = 0.0;            // total objective of the step
  double policy_loss = 0.0;     // surrogate term (SFT: cross-entropy per token)
  double kl = 0.0;              // mean KL(pi || ref) estimate over trained tokens (0 if off)
  double entropy = 0.0;         // mean token entropy over trained tokens
  double grad_norm = 0.0;       // global L2 norm before clipping
  double clip_fraction = 0.0;   // fraction of trained tokens whose ratio was clipped
  double mismatch_kl = 0.0;     // mean k3 estimate of KL(rollout || trainer) over tokens with rollout logprobs
  double mismatch_max_abs_diff = 0.0;  // max |trainer logprob - rollout logprob|
  double is_weight_mean = 0.0;  // mean TIS/MIS weight applied (1 when no correction)
  double is_masked_fraction = 0.0;  // fraction of tokens MIS dropped
  double stale_token_fraction = 0.0;  // tokens sampled by a version older than the trained one
  int64_t tokens = 0;           // trained (unmasked) response tokens
  int64_t sequences = 0;        // sequences trained on
  int64_t dropped_groups = 0;   // DAPO dynamic sampling: groups with all-equal rewards removed
  int64_t micro_batches = 0;    // per rank (max over ranks)
  int64_t nonfinite_skipped = 0;  // updates skipped for a non-finite loss or gradient (weights kept)
  double learning_rate = 0.0;
  double seconds = 0.0;         // wall time of the step on this rank

  // Name/value pairs for metrics export ("train/loss", ...).
  std::vector<std::pair<std::string, double>> Metrics() const {
    return {{"train/loss", loss},
            {"train/policy_loss", policy_loss},
            {"train/kl", kl},
            {"train/entropy", entropy},
            {"train/grad_norm", grad_norm},
            {"train/clip_fraction", clip_fraction},
            {"train/mismatch_kl", mismatch_kl},
            {"train/mismatch_max_abs_diff", mismatch_max_abs_diff},
            {"train/is_weight_mean", is_weight_mean},
            {"train/is_masked_fraction", is_masked_fraction},
            {"train/stale_token_fraction", stale_token_fraction},
            {"train/tokens", static_cast<double>(tokens)},
            {"train/sequences", static_cast<double>(sequences)},
            {"train/dropped_groups", static_cast<double>(dropped_groups)},
            {"train/micro_batches", static_cast<double>(micro_batches)},
            {"train/nonfinite_skipped", static_cast<double>(nonfinite_skipped)},
            {"train/learning_rate", learning_rate},
            {"train/step_seconds", seconds}};
  }
};

}  // namespace tidal::trainer
