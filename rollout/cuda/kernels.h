// Host entry points of the rollout engine's CUDA kernels (rollout/cuda/*.cu).
//
// Contract:
// - Torch-free and CUDA-free header: pointers are raw device pointers, `stream` is a
//   cudaStream_t passed as void*. Every launch is asynchronous on that stream and checks the
//   launch itself (a failure throws std::runtime_error naming the kernel and the CUDA error).
// - Every kernel reads its sizes from device memory where they change step to step
//   (kv_len, slot mapping), and takes only fixed sizes as arguments, so a launch can be
//   captured in a CUDA graph and replayed with new inputs written into the same buffers.
// - Compiled only when TIDAL_CUDA is on (callers guard with TIDAL_WITH_CUDA). Explicitly
//   instantiated for fp32 / fp16 / bf16 and head_dim 32, 64, 128; GQA groups of 1..8.
#pragma once

#include <cstdint>

#include "core/cuda/dtype.h"

namespace tidal::rollout::cuda {

using ::tidal::cuda::Dtype;  // core/cuda/dtype.h

// Writes each new token's k and v ([T, Hkv, D], contiguous) into the paged caches
// ([num_slots, Hkv, D] viewed flat; slot = block * block_size + offset). slot < 0 skips the
// token (padding rows of a captured batch).
void KvAppend(Dtype dtype, const void* k, const void* v, void* k_cache, void* v_cache,
              const int64_t* slot_mapping, int64_t num_tokens, int64_t kv_heads,
              int64_t head_dim, void* stream);

// Attention of every query token over its sequence's paged cache, no gathering.
// q: [T, Hq, D] contiguous; out: [T, Hq, D]. Token t belongs to the sequence whose block-table
// row is token_seq[t] (row stride table_stride, int32 block ids) and attends to keys
// [0, kv_len[t]) of that sequence (kv_len = context_len - chunk_len + index_in_chunk + 1:
// causal inside a chunk, the cached prefix in front). kv_len[t] == 0 writes zeros (padding).
// GQA: query head hq reads kv head hq / (Hq / Hkv); Hq / Hkv must be in 1..8.
// Split-KV: keys are folded in chunks of kPagedAttentionChunk, in order, whatever the split, so
// the result is the same bit for bit with or without one. num_splits > 1 (pick it with
// PagedAttentionSplits; it pays for decode-sized launches) spreads a row's chunks over that many
// blocks and needs `workspace`, PagedAttentionWorkspaceFloats fp32 values on the device, and
// max_chunks = PagedAttentionChunks(the longest context any row can have); a row longer than
// that is cut short (the caller's contract, not checked on the device).
constexpr int kPagedAttentionChunk = 256;
constexpr int kMaxPagedAttentionSplits = 16;
struct PagedAttentionArgs {
  Dtype dtype = Dtype::kBF16;
  const void* q = nullptr;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  void* out = nullptr;
  const int32_t* block_tables = nullptr;
  int64_t table_stride = 0;
  const int32_t* token_seq = nullptr;
  const int32_t* kv_len = nullptr;
  int64_t num_tokens = 0;
  int64_t q_heads = 0, kv_heads = 0, head_dim = 0, block_size = 0;
  float scale = 1.0f;
  int32_t num_splits = 1;
  int32_t max_chunks = 0;
  float* workspace = nullptr;  // [num_tokens, q_heads, max_chunks, head_dim + 2]
};
void PagedAttention(const PagedAttentionArgs& a, void* stream);
bool PagedAttentionSupports(int64_t head_dim, int64_t group);
int64_t PagedAttentionChunks(int64_t max_context);
// 1 when splitting does not pay (enough (token, kv head) blocks to fill the GPU, one chunk, or a
// workspace over 64 MiB); reads the current device's multiprocessor count once.
int PagedAttentionSplits(int64_t num_tokens, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                         int64_t max_context);
int64_t PagedAttentionWorkspaceFloats(int64_t num_tokens, int64_t q_heads, int64_t head_dim, int64_t max_context);

// One row's sampling parameters (see rollout/sampler.h for the semantics).
struct SampleRowParams {
  float inv_temperature;  // 1 for greedy rows
  float top_p;            // >= 1: off
  float min_p;            // <= 0: off
  int32_t top_k;          // <= 0 or >= V: off
  int32_t greedy;
  uint64_t seed;
  int64_t token_index;
};
// logits [R, V] contiguous in `dtype` (widened to fp32 exactly as they are read) -> tokens [R]
// int32, logprobs [R] fp32 (full-vocabulary log_softmax(logits * inv_temperature)[token], in
// fp32). One thread block per row; no sort.
void SampleRows(Dtype dtype, const void* logits, int64_t rows, int64_t vocab, const SampleRowParams* params,
                int32_t* tokens, float* logprobs, void* stream);

}  // namespace tidal::rollout::cuda

namespace tidal::rollout::cuda {

// Fused pieces of the decoder layer (rollout/cuda/fused_layer.cu), each the same arithmetic as
// core/model.cpp's ops in the same order of roundings (fp32 inside, one rounding to the
// storage dtype where the ATen op rounds):
// out = RmsNorm(x + residual) with residual updated in place to x + residual (residual may be
// null: plain RmsNorm of x). Rows of `hidden` elements, contiguous.
void AddRmsNorm(Dtype dtype, const void* x, void* residual, const void* weight, void* out,
                int64_t rows, int64_t hidden, float eps, void* stream);
// RoPE (HF rotate_half, angles pos * inv_freq[i] in fp32) on q [T, Hq, D] -> q_out and on
// k [T, Hkv, D], then k (rotated) and v [T, Hkv, D] written to the caches at slot_mapping
// (slot < 0 skipped). q, k, v rows may have strides (views of one projection output).
struct RopeAppendArgs {
  Dtype dtype = Dtype::kBF16;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0;  // elements between tokens
  void* q_out = nullptr;                              // [T, Hq, D] contiguous
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  const int64_t* positions = nullptr;
  const float* inv_freq = nullptr;  // [D/2]
  const int64_t* slot_mapping = nullptr;
  int64_t num_tokens = 0, q_heads = 0, kv_heads = 0, head_dim = 0;
};
void RopeAppend(const RopeAppendArgs& a, void* stream);
// out = silu(gate) * up, silu rounded to the dtype first (as at::silu then at::mul). gate and up
// are [rows, cols] with `in_stride` elements between rows (two halves of one GEMM's output, or
// two contiguous tensors with in_stride = cols); out is [rows, cols] contiguous.
void SiluMul(Dtype dtype, const void* gate, const void* up, int64_t in_stride, void* out, int64_t rows,
             int64_t cols, void* stream);

}  // namespace tidal::rollout::cuda
