// The decoder layer's fused CUDA ops with autograd (kernels in fused_layer_kernels.cu), used by
// core/model.cpp's RmsNorm / ApplyRope / DecoderLayer for CUDA bf16/fp16 tensors.
//
// Contract:
// - Each op matches the ATen composite in core/model.cpp it replaces (same roundings; see
//   fused_layer_kernels.h) and is differentiable once (no double backward).
// - Launches run on the current CUDA stream of the input's device (forward) and on the stream
//   autograd runs the backward on; no host synchronisation.
// - The ops exist only in CUDA builds (TIDAL_WITH_CUDA); the switch below exists in every build.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>

namespace tidal {

// Whether core/model.cpp uses these ops for CUDA bf16/fp16 tensors. Starts from the environment
// variable TIDAL_TRAIN_FUSED (read once; "0" turns the fused path off, anything else or unset
// leaves it on); the setter serves A/B benchmarks and tests. Thread-safe.
bool FusedLayerOpsEnabled();
void SetFusedLayerOpsEnabled(bool on);

#ifdef TIDAL_WITH_CUDA
namespace cuda {

// True when the fused path applies to x: CUDA, bf16 or fp16, and FusedLayerOpsEnabled().
bool UseFusedLayerOps(const at::Tensor& x);

// RMSNorm over the last dimension (<= 8192) of x (any leading shape), weight [hidden] of x's
// dtype on the same device (FusedRmsNormSupports says whether x and weight qualify).
bool FusedRmsNormSupports(const at::Tensor& x, const at::Tensor& weight);
at::Tensor FusedRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

// RoPE of q [T, Hq, D] and k [T, Hkv, D] (each with heads contiguous inside a row; row strides
// free) by positions [T] int64 and inv_freq [D/2] fp32, in one launch; Hkv may be 0. Returns
// contiguous {q, k}.
std::array<at::Tensor, 2> FusedRope(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions,
                                    const at::Tensor& inv_freq);

// Splits one packed projection qkv [T, (Hq + 2 Hkv) D] (contiguous) into contiguous q, k (RoPE
// applied) and v, in one launch forward and one backward (which writes the packed gradient
// directly, no per-slice zero-fill and sum).
std::array<at::Tensor, 3> FusedQkvRope(const at::Tensor& qkv, const at::Tensor& positions,
                                       const at::Tensor& inv_freq, int64_t q_heads, int64_t kv_heads,
                                       int64_t head_dim);

// silu(gate) * up of one packed projection gate_up [..., 2 I] -> [..., I].
at::Tensor FusedSwiGlu(const at::Tensor& gate_up);

}  // namespace cuda
#endif

}  // namespace tidal
