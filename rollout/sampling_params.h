// Per-request sampling parameters: what the sampler and the stop checks read.
//
// Torch-free plain data, validated once when a request enters the engine (Validate). The
// sampler (rollout/sampler.h) documents the exact distribution each field shapes and which
// logprob is returned.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tidal::rollout {

inline constexpr int32_t kMaxTopLogprobs = 20;  // OpenAI's limit

struct SamplingParams {
  // 0 means greedy (argmax); otherwise logits are divided by it before softmax.
  double temperature = 1.0;
  int32_t top_k = 0;     // keep the k most likely tokens; 0 or -1 = off
  double top_p = 1.0;    // keep the smallest set whose mass reaches top_p; 1 = off
  double min_p = 0.0;    // drop tokens with p < min_p * p_max; 0 = off
  int64_t max_new_tokens = 16;
  std::vector<int32_t> stop_token_ids;    // in addition to the engine's eos ids
  std::vector<std::string> stop_strings;  // needs EngineConfig::detokenize
  bool ignore_eos = false;                // do not stop on the engine's eos ids
  // Also report the k most likely tokens of each step's distribution (the same full-vocabulary
  // logprobs as the sampled token's) in TokenEvent::top_logprobs; 0 = off (OpenAI top_logprobs).
  int32_t top_logprobs = 0;

  bool Greedy() const { return temperature == 0.0; }
  // Field ranges; messages name the field and the value found.
  absl::Status Validate() const {
    if (!(temperature >= 0.0)) return absl::InvalidArgumentError(absl::StrCat("sampling: temperature must be >= 0, got ", temperature));
    if (top_k < -1) return absl::InvalidArgumentError(absl::StrCat("sampling: top_k must be >= -1 (0/-1 = off), got ", top_k));
    if (!(top_p > 0.0 && top_p <= 1.0)) return absl::InvalidArgumentError(absl::StrCat("sampling: top_p must be in (0, 1], got ", top_p));
    if (!(min_p >= 0.0 && min_p <= 1.0)) return absl::InvalidArgumentError(absl::StrCat("sampling: min_p must be in [0, 1], got ", min_p));
    if (max_new_tokens < 1) return absl::InvalidArgumentError(absl::StrCat("sampling: max_new_tokens must be >= 1, got ", max_new_tokens));
    if (top_logprobs < 0 || top_logprobs > kMaxTopLogprobs) return absl::InvalidArgumentError(absl::StrCat("sampling: top_logprobs must be in [0, ", kMaxTopLogprobs, "], got ", top_logprobs));
    for (const std::string& s : stop_strings) {
      if (s.empty()) return absl::InvalidArgumentError("sampling: stop_strings contains an empty string");
    }
    return absl::OkStatus();
  }
};

}  // namespace tidal::rollout
