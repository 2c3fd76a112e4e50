// Executes one planned step of the model over the paged KV cache (LibTorch ops, any device).
//
// Contract:
// - Owns the KV cache: per layer a K and a V tensor [num_blocks, block_size, kv_heads,
//   head_dim] in the weights' dtype on the engine's device. Does not own the weights: it reads
//   the engine's NamedTensors through the one model definition (core/model.h: Embed,
//   DecoderLayer, FinalNorm, LmHead) and supplies only the attention (PagedAttention below).
// - Run(plan) copies the plan's index arrays into input buffers allocated once at
//   construction (sized by max_batch_tokens / max_seqs / max_blocks_per_seq), runs the
//   forward pass for all new tokens at once (projections and MLP batched over the step), and
//   returns fp32 logits [R, V] for plan.logits_rows only.
// - Attention per layer: first every new token's k/v is written at slot_mapping, then queries
//   attend over their sequence's blocks. Decode rows (one new token) are attended in one
//   padded batch; multi-token chunks one sequence at a time (causal, offset by the cached
//   context). Writing before reading is what lets sequences of one step share prefix blocks.
// - Single-threaded (the engine's thread). ReleaseKvCache/AllocateKvCache drop and recreate
//   the cache tensors (contents lost).
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/model.h"
#include "rollout/step_plan.h"

namespace tidal::rollout {

struct RunnerConfig {
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  int64_t max_batch_tokens = 2048;
  int64_t max_seqs = 64;
  int64_t max_blocks_per_seq = 0;
  at::Device device = at::kCPU;
};

class ModelRunner {
 public:
  // `weights` must outlive the runner; their storage may be rewritten in place between steps.
  ModelRunner(const ModelConfig& config, const NamedTensors* weights, RunnerConfig cfg);

  at::Tensor Run(const StepPlan& plan);

  // Bytes one KV block takes over all layers (K and V).
  static int64_t KvBytesPerBlock(const ModelConfig& config, int64_t block_size,
                                 at::ScalarType dtype);
  void ReleaseKvCache();
  void AllocateKvCache();
  bool HasKvCache() const { return !k_cache_.empty(); }
  // Re-reads the layer views after the weight tensors were replaced (not needed after in-place
  // copies).
  void RefreshWeightViews();
  void DropWeightViews() { layers_.clear(); }  // lets released weight storage actually go
  const RunnerConfig& config() const { return cfg_; }

 private:
  at::Tensor PagedAttention(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v);
  void LoadInputs(const StepPlan& plan);

  ModelConfig model_;
  const NamedTensors* weights_;
  RunnerConfig cfg_;
  at::ScalarType dtype_;
  std::vector<LayerWeights> layers_;
  std::vector<at::Tensor> k_cache_, v_cache_;

  // Input buffers (int64 on the device), sized at construction; a step uses their prefixes.
  at::Tensor token_ids_, positions_, slot_mapping_, logits_rows_;
  at::Tensor block_tables_;  // [max_seqs * max_blocks_per_seq], row stride max_blocks_per_seq
  at::Tensor decode_rows_, decode_tables_, decode_lens_;
  at::Tensor decode_mask_;  // [num_decode, 1, 1, keys] for the current step
  // Host copy of the current plan's per-sequence data, for the loop over chunked prefills.
  const StepPlan* plan_ = nullptr;
  std::vector<int64_t> prefill_seqs_;     // batch indices of multi-token chunks
  std::vector<at::Tensor> prefill_masks_;  // their causal-with-offset masks (undefined: plain causal)
  int64_t num_decode_ = 0, decode_blocks_ = 0;
};

}  // namespace tidal::rollout
