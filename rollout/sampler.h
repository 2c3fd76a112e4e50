// Token sampling and stop checks.
//
// The logprob returned for every generated token (the "rollout logprob" the trainer compares
// with its own) is, exactly:
//     log_softmax(logits / T, over the FULL vocabulary)[token]
// computed in fp32 from the row's logits (bf16 / fp16 logits widened to fp32, exactly), where
// T is the request's temperature, or T = 1 for greedy requests (temperature 0). It is taken
// BEFORE top-k / top-p / min-p truncation: truncation only restricts which token is drawn.
// This is what Model::TokenLogprobs(ids, cu, targets, temperature) returns for the same tokens
// and weights, so rollout and trainer logprobs agree up to fp32 rounding.
//
// Drawing (temperature > 0): p = softmax(logits / T); keep the top_k most likely (ties broken
// by lower token id), then the smallest prefix of those, renormalised, whose mass reaches top_p,
// then drop tokens with p < min_p * p_max; draw by inverse CDF over what is left (in descending
// probability order) with ONE uniform u in [0, 1). u = UniformForToken(seed, i) depends only on
// the request's seed and the index i of the generated token: the same request samples the same
// tokens whatever else is in the batch, and after a preemption it continues the same stream.
// Greedy: argmax (lowest id on ties).
//
// On a CUDA device (logits.is_cuda(), builds with TIDAL_WITH_CUDA) the draw is done by a kernel
// (rollout/cuda/sampling.cu) with the same returned logprob and the same filters, but a
// different random mechanism, so CPU and CUDA runs of one seed draw different tokens:
//   - top_k / top_p become a threshold on the logit (bisection, no sort); tokens tied with the
//     k-th largest logit are all kept (the CPU path keeps the lower ids), and the top_p
//     threshold keeps every token tied at the boundary;
//   - the token is argmax over the kept tokens of logits / T + g_i, with Gumbel noise
//     g_i = -log(-log(U_i)), U_i a 24-bit hash of (seed, token index, vocabulary id i): an
//     exact draw from the kept, renormalised distribution, still a function of the request's
//     seed and position only (batch-independent, continued after a preemption).
// The logprob is computed in the kernel from the same fp32 logits (max shift, one sum of exp;
// no double precision, no batch x vocabulary copy beyond the logits themselves).
//
// Thread-safety: pure functions.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "rollout/sampling_params.h"

namespace tidal::rollout {

// Counter-based uniform in [0, 1) (53 random bits) from (seed, token index).
double UniformForToken(uint64_t seed, int64_t index);

struct SampleRow {
  const SamplingParams* params;
  uint64_t seed;
  int64_t token_index;  // index of the token being generated among the request's outputs
};

struct TopLogprob {
  int32_t token;
  float logprob;
};

struct SampleResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  // Per row, its params' top_logprobs most likely tokens, most likely first (ties: lower id);
  // empty when no row asks for any.
  std::vector<std::vector<TopLogprob>> top;
};

// logits: [R, V] (any device; used as fp32); rows.size() == R. CUDA logits go to
// SampleOnDevice.
SampleResult Sample(const at::Tensor& logits, std::span<const SampleRow> rows);
#ifdef TIDAL_WITH_CUDA
// The CUDA kernel path described above (logits on a CUDA device).
SampleResult SampleOnDevice(const at::Tensor& logits, std::span<const SampleRow> rows);
#endif

// Text of a token slice; needed only for stop strings.
using Detokenizer = std::function<std::string(std::span<const int32_t>)>;

struct StopCheck {
  bool stop = false;
  bool length = false;       // max_new_tokens / max_model_len reached (only when !stop)
  std::string stop_string;   // set when a stop string matched
};
// Checks the request's output after its newest token was appended. eos_ids are the engine's
// (skipped with ignore_eos). Stop strings are searched in the text of the output's tail that
// can contain a match ending in the newest token (the detokenizer must map every token to at
// least one byte, true for byte-level tokenizers; special tokens may decode to their text).
StopCheck CheckStop(const SamplingParams& params, std::span<const int32_t> output,
                    std::span<const int32_t> eos_ids, int64_t total_tokens,
                    int64_t max_model_len, const Detokenizer& detokenize);

}  // namespace tidal::rollout
