// Executes one planned step of the model over the paged KV cache.
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
// - Two attention paths, chosen by device at construction:
//   * LibTorch ops (CPU, or CUDA builds without kernels for the shape): decode rows are
//     attended in one padded batch (keys gathered by block table), multi-token chunks one
//     sequence at a time;
//   * CUDA kernels (rollout/cuda/kernels.h): k/v appended by slot mapping, then one paged
//     attention launch for every query token of the step (decode rows and prefill chunks,
//     prefix hits included) reading the cache through the block tables, no gather. Step
//     inputs go through pinned staging buffers with non-blocking copies. Decode-only steps
//     run as CUDA graphs captured per padded batch size when the cache is allocated (a ladder 1, 2, 4, 8, 16, then
//     multiples of 16 up to max_seqs); padding rows write no K/V (slot -1) and attend to
//     nothing. Graphs read the weights' and the cache's storage: in-place weight copies keep
//     them valid; ReleaseKvCache / DropWeightViews / RefreshWeightViews drop them.
// - Single-threaded (the engine's thread; the current CUDA stream of that thread). CUDA graph
//   capture uses thread-local capture mode, so other threads of a colocated process may keep
//   issuing CUDA work. ReleaseKvCache/AllocateKvCache drop and recreate the cache tensors
//   (contents lost).
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <vector>

#include "core/model.h"
#include "rollout/fused_projections.h"
#include "rollout/step_plan.h"

namespace tidal::rollout {

struct RunnerConfig {
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  int64_t max_batch_tokens = 2048;
  int64_t max_seqs = 64;
  int64_t max_blocks_per_seq = 0;
  at::Device device = at::kCPU;
  bool cuda_graphs = true;  // decode-only steps on CUDA replay captured graphs
  // CUDA: run the decoder layer with the fused kernels (add + RMSNorm, RoPE + KV append,
  // SiLU-and-mul; same roundings as core/model.cpp) instead of DecoderLayer's ATen ops.
  // Qwen2/Llama layers only (no q/k norm); others use DecoderLayer.
  bool fused_layers = true;
};

class ModelRunner {
 public:
  // `weights` must outlive the runner; their storage may be rewritten in place between steps.
  ModelRunner(const ModelConfig& config, const NamedTensors* weights, RunnerConfig cfg);
  ~ModelRunner();

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
  void DropWeightViews();  // lets released weight storage actually go
  const RunnerConfig& config() const { return cfg_; }
  // True when steps run the CUDA kernels (device is CUDA and the shape is instantiated).
  bool uses_cuda_kernels() const { return cuda_kernels_; }
  int64_t num_cuda_graphs() const { return static_cast<int64_t>(graphs_.size()); }
  // Free bytes on the device (cudaMemGetInfo); 0 on CPU or in builds without CUDA.
  static int64_t FreeDeviceBytes(at::Device device);

 private:
  at::Tensor PagedAttention(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v);
  void LoadInputs(const StepPlan& plan);
  // CUDA path (model_runner_cuda.cpp).
  void InitCuda();
  at::Tensor RunCuda(const StepPlan& plan);
  // Copies the plan into the device buffers, `padded` token rows (>= plan.num_tokens).
  void LoadInputsCuda(const StepPlan& plan, int64_t padded);
  // Forward over the first `tokens` rows of the input buffers; logits for logits_rows_[0, rows)
  // or, with rows < 0, for every row.
  at::Tensor ForwardCuda(int64_t tokens, int64_t rows);
  at::Tensor CudaAttention(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                           const at::Tensor& v);
  at::Tensor ForwardCudaFused(int64_t tokens, int64_t rows);
  // Paged attention of q [T, Hq, D] (contiguous) over layer's cache, K/V already appended.
  at::Tensor AttendCached(int64_t layer, const at::Tensor& q);
  int64_t GraphBatch(int64_t num_seqs) const;  // padded size, 0 = no graph for this size
  void DropGraphs();
  // Captures the decode graph of every ladder size (largest first, one shared memory pool);
  // run when the cache is (re)allocated so no capture lands inside a timed step.
  void CaptureGraphs();
  void CaptureGraph(int64_t padded);

  ModelConfig model_;
  const NamedTensors* weights_;
  RunnerConfig cfg_;
  at::ScalarType dtype_;
  std::vector<LayerWeights> layers_;
  std::vector<FusedProjections> fused_proj_;  // per layer; undefined where not packed
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

  // CUDA path: int32 per-token attention inputs and block tables, pinned host mirrors of
  // every input buffer, and the captured decode graphs by padded batch size.
  bool cuda_kernels_ = false;
  bool fused_ = false;
  at::Tensor inv_freq_;  // RoPE [D/2] fp32 (RopeInvFreq), for the fused path
  at::Tensor kv_len_, token_seq_, block_tables32_;
  at::Tensor host_i64_, host_i32_;  // pinned; [token_ids | positions | slots | logits_rows], [kv_len | token_seq | tables]
  // Defined in model_runner_cuda.cpp (CUDA headers); shared_ptr so that this header and
  // model_runner.cpp need not see the complete types.
  struct CudaState;
  std::shared_ptr<CudaState> cuda_;
  struct Graph;
  std::map<int64_t, std::shared_ptr<Graph>> graphs_;
};

}  // namespace tidal::rollout
