// Host entry points of the decoder layer's fused elementwise kernels (fused_layer_kernels.cu):
// RMSNorm, RoPE and SwiGLU, forward and backward, for the training path (core/cuda/
// fused_layer_ops.h wraps them as autograd functions).
//
// Contract:
// - Torch-free and CUDA-free header: pointers are raw device pointers of the element type
//   `dtype`, `stream` is a cudaStream_t passed as void*. Every launch is asynchronous on that
//   stream and checks the launch itself (a failure throws std::runtime_error naming the kernel).
//   The caller has made the tensors' device current. core/cuda/kernel_dtype.h maps LibTorch
//   dtypes onto `dtype`.
// - Rounding follows core/model.cpp's ATen composites (HF's order): math in fp32, rounded to the
//   element type exactly where the composite rounds, so results match it bit for bit except
//   where a reduction's summation order differs (RMSNorm's mean of squares, its weight grad).
// - Compiled only when TIDAL_CUDA is on (callers guard with TIDAL_WITH_CUDA).
#pragma once

#include <cstdint>

#include "core/cuda/dtype.h"

namespace tidal::cuda {

// RMSNorm over the last dimension (hidden <= kMaxRmsNormHidden) of x [rows, hidden], contiguous:
// y = w * round(x * rsqrt(mean(x^2) + eps)). Writes rstd [rows] fp32 (for the backward) when
// not null.
constexpr int64_t kMaxRmsNormHidden = 8192;
void RmsNormForward(Dtype dtype, const void* x, const void* weight, void* y, float* rstd,
                    int64_t rows, int64_t hidden, float eps, void* stream);
// Backward of RmsNormForward from its rstd: dx [rows, hidden] and, when dweight is not null,
// dweight [hidden] reduced over rows in two stages: each of `partial_blocks` blocks sums its rows
// into partial [partial_blocks, hidden] fp32, then one pass sums the partials (fixed order, so
// deterministic). Pick partial_blocks with RmsNormBackwardBlocks.
int64_t RmsNormBackwardBlocks(int64_t rows, int sm_count);
void RmsNormBackward(Dtype dtype, const void* dy, const void* x, const void* weight,
                     const float* rstd, void* dx, void* dweight, float* partial,
                     int64_t partial_blocks, int64_t rows, int64_t hidden, void* stream);

// Rotate-half RoPE of q [T, Hq, D] and k [T, Hkv, D] in one launch, angles positions[t] *
// inv_freq[i] (fp32, as ApplyRope) computed in the kernel: one thread per (token, frequency
// chunk) computes its cos/sin once and applies them to every head, so no table is stored or
// re-read. Heads are contiguous inside a row (head stride D, element stride 1); row strides are
// free, so q/k/v may be column blocks of one packed [T, (Hq + 2 Hkv) D] projection. v, when set,
// is copied through unchanged (v_out gets the packed layout's v block, or v's gradient in the
// backward). inverse = true rotates by -angle: the backward of the forward rotation.
struct RopeArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0;  // row strides, in elements
  void* q_out = nullptr;
  void* k_out = nullptr;
  void* v_out = nullptr;
  int64_t q_out_stride = 0, k_out_stride = 0, v_out_stride = 0;
  const int64_t* positions = nullptr;  // [T]
  const float* inv_freq = nullptr;     // [D / 2]
  int64_t tokens = 0;
  int64_t q_heads = 0, kv_heads = 0, head_dim = 0;
  bool inverse = false;
  Dtype dtype = Dtype::kBF16;
};
void Rope(const RopeArgs& a, void* stream);

// SwiGLU of one packed gate/up projection: gate_up [rows, 2 I] (gate in columns [0, I), up in
// [I, 2 I)), out [rows, I] = round(round(silu(gate)) * up), both contiguous.
void SwiGluForward(Dtype dtype, const void* gate_up, void* out, int64_t rows, int64_t inter,
                   void* stream);
// Gradient of gate_up [rows, 2 I] from dy [rows, I], in one pass.
void SwiGluBackward(Dtype dtype, const void* dy, const void* gate_up, void* dgate_up,
                    int64_t rows, int64_t inter, void* stream);

}  // namespace tidal::cuda
