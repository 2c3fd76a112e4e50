// The trainer's output head statistics: per-token log-probability of the target (and entropy)
// under softmax(logits / temperature), and the gradient of any objective built on them, straight
// from the model-dtype logits [n, V] the lm_head GEMM writes.
//
// Why not log_softmax + autograd: that materialises fp32 [n, V] copies of the logits (the cast,
// the log-probabilities, their gradient), several passes of 4-byte elements over a 152k-wide
// vocabulary per token. Here the forward is one pass over the logits (online max / sum-exp /
// sum-exp·z) and the backward one pass that overwrites the logits with their gradient, so the
// head costs the GEMMs plus two reads and one write of the logits in their own dtype.
//
// Math (z = logits / T, lse = logsumexp(z), p = exp(z - lse)):
//   logprob  = z[target] - lse
//   entropy  = lse - sum(p * z)
//   d/dz_j   = g_lp * (1[j = target] - p_j)  -  g_ent * p_j * (z_j - lse + entropy)
//   d/dlogit = d/dz / T
// All arithmetic in fp32 whatever the logits' dtype; the gradient is rounded once to it.
//
// Contract: logits [n, V] contiguous fp32 / fp16 / bf16 on CPU or CUDA; targets [n] int64 in
// [0, V) on the same device. CUDA work runs on the current stream of the logits' device (no host
// synchronisation); CPU runs the same math with ATen ops.
#pragma once

#include <ATen/ATen.h>

#include <utility>
#include <vector>

namespace tidal::trainer {

struct HeadStats {
  at::Tensor logprobs;  // [n] fp32
  at::Tensor entropy;   // [n] fp32 (undefined unless requested)
  at::Tensor lse;       // [n] fp32 logsumexp of logits / T (the backward's softmax normaliser)
};

HeadStats TokenHeadForward(const at::Tensor& logits, const at::Tensor& targets, double temperature,
                           bool with_entropy);

// Overwrites `logits` with d(sum_i g_lp[i] * logprobs[i] + g_ent[i] * entropy[i]) / d logits.
// `g_ent` may be undefined (no entropy term); then stats.entropy is not needed.
void TokenHeadBackwardInPlace(at::Tensor& logits, const at::Tensor& targets, const HeadStats& stats,
                              const at::Tensor& g_lp, const at::Tensor& g_ent, double temperature);

// The lm_head over rows [K, H] and its weight [V, H] (both the model dtype), in chunks of
// `chunk_rows` rows (on the CPU at most 512 MiB of fp32 logits a chunk, for the ATen path's
// working copies): each chunk's logits come from one GEMM in the model dtype. Forward keeps
// every chunk's logits for Backward when they fit in `keep_bytes` together (one GEMM fewer per
// chunk, and the backward's kernel overwrites them in place), else Backward recomputes them.
// Backward returns d rows [K, H] and adds d weight into *grad_weight (allocating it when
// undefined): one GEMM each per chunk, accumulated in the weight's dtype.
class ChunkedHead {
 public:
  ChunkedHead(at::Tensor rows, at::Tensor weight, at::Tensor targets, double temperature, int64_t chunk_rows,
              int64_t keep_bytes);

  // [K] fp32 logprobs, and entropy when with_entropy (else undefined).
  std::pair<at::Tensor, at::Tensor> Forward(bool with_entropy);
  // g_ent may be undefined (no entropy term); a defined g_ent needs Forward(with_entropy=true).
  at::Tensor Backward(const at::Tensor& g_lp, const at::Tensor& g_ent, at::Tensor* grad_weight);

 private:
  at::Tensor Logits(int64_t chunk) const;
  int64_t Rows(int64_t chunk) const;

  at::Tensor rows_, weight_, targets_;
  double temperature_;
  int64_t chunk_rows_, chunks_;
  bool keep_;
  std::vector<at::Tensor> kept_;
  std::vector<HeadStats> stats_;
};

}  // namespace tidal::trainer
