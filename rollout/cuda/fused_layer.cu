// Fused decoder-layer pieces (see kernels.h): residual add + RMSNorm, RoPE + KV append, and
// SiLU-and-mul. Each replaces several ATen launches of core/model.cpp with one, keeping its
// roundings: fp32 math, __fmul_rn / __fadd_rn where ATen runs separate kernels (no FMA
// contraction), and a rounding to the storage dtype wherever the ATen op produced one.
#include <cmath>

#include "core/cuda/dtype_util.cuh"
#include "rollout/cuda/kernels.h"

namespace tidal::rollout::cuda {
using namespace ::tidal::cuda;  // ToFloat, FromFloat, CheckLaunch (core/cuda/dtype_util.cuh)
namespace {

constexpr int kNormThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kNormThreads) AddRmsNormKernel(const T* x, T* residual, const T* w,
                                                                 T* out, int64_t hidden, float eps) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * hidden;
  T* rr = residual ? residual + row * hidden : nullptr;
  T* orow = out + row * hidden;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < hidden; i += kNormThreads) {
    float h = ToFloat(xr[i]);
    if (rr) {
      h = Round<T>(__fadd_rn(h, ToFloat(rr[i])));  // hidden + x, rounded like the ATen add
      rr[i] = FromFloat<T>(h);
    }
    ss += h * h;
  }
  __shared__ float buf[kNormThreads / 32];
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) buf[threadIdx.x >> 5] = ss;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int i = 0; i < kNormThreads / 32; ++i) total += buf[i];
  const float rstd = rsqrtf(__fadd_rn(total / static_cast<float>(hidden), eps));
  for (int64_t i = threadIdx.x; i < hidden; i += kNormThreads) {
    const float h = rr ? ToFloat(rr[i]) : ToFloat(xr[i]);  // this thread's own write above
    const float n = Round<T>(__fmul_rn(h, rstd));          // normalised, cast to the dtype
    orow[i] = FromFloat<T>(__fmul_rn(ToFloat(w[i]), n));   // weight * normalised
  }
}

// One thread per (token, head, i < D/2) pair of q, then of k (with the cache write).
template <typename T>
__global__ void RopeAppendKernel(const RopeAppendArgs a) {
  const int64_t half = a.head_dim / 2;
  const int64_t q_pairs = a.num_tokens * a.q_heads * half;
  const int64_t k_pairs = a.num_tokens * a.kv_heads * half;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < q_pairs + k_pairs;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const bool is_q = idx < q_pairs;
    const int64_t j = is_q ? idx : idx - q_pairs;
    const int64_t heads = is_q ? a.q_heads : a.kv_heads;
    const int64_t t = j / (heads * half), h = (j / half) % heads, i = j % half;
    const float angle = __fmul_rn(static_cast<float>(a.positions[t]), a.inv_freq[i]);
    const float c = cosf(angle), s = sinf(angle);
    const T* src = static_cast<const T*>(is_q ? a.q : a.k) + t * (is_q ? a.q_stride : a.k_stride) +
                   h * a.head_dim;
    const float x1 = ToFloat(src[i]), x2 = ToFloat(src[i + half]);
    // xf * cos + rotate_half(xf) * sin, rotate_half = cat(-x2, x1)
    const float o1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(-x2, s));
    const float o2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    if (is_q) {
      T* dst = static_cast<T*>(a.q_out) + (t * a.q_heads + h) * a.head_dim;
      dst[i] = FromFloat<T>(o1);
      dst[i + half] = FromFloat<T>(o2);
    } else {
      const int64_t slot = a.slot_mapping[t];
      if (slot < 0) continue;
      const int64_t off = (slot * a.kv_heads + h) * a.head_dim;
      T* kc = static_cast<T*>(a.k_cache) + off;
      kc[i] = FromFloat<T>(o1);
      kc[i + half] = FromFloat<T>(o2);
      const T* vs = static_cast<const T*>(a.v) + t * a.v_stride + h * a.head_dim;
      T* vc = static_cast<T*>(a.v_cache) + off;
      vc[i] = vs[i];
      vc[i + half] = vs[i + half];
    }
  }
}

template <typename T>
__global__ void SiluMulKernel(const T* g, const T* u, int64_t in_stride, T* out, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols; c += int64_t{gridDim.x} * blockDim.x) {
      const float x = ToFloat(g[r * in_stride + c]);
      const float s = Round<T>(x / (1.0f + expf(-x)));
      out[r * cols + c] = FromFloat<T>(__fmul_rn(s, ToFloat(u[r * in_stride + c])));
    }
  }
}

unsigned Blocks(int64_t n, int threads) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 8192)));
}

}  // namespace

void AddRmsNorm(Dtype dtype, const void* x, void* residual, const void* weight, void* out,
                int64_t rows, int64_t hidden, float eps, void* stream) {
  if (rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = static_cast<unsigned>(rows);
  switch (dtype) {
    case Dtype::kF32:
      AddRmsNormKernel<float><<<grid, kNormThreads, 0, s>>>(static_cast<const float*>(x), static_cast<float*>(residual),
                                                           static_cast<const float*>(weight), static_cast<float*>(out), hidden, eps);
      break;
    case Dtype::kF16:
      AddRmsNormKernel<__half><<<grid, kNormThreads, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(residual),
                                                            static_cast<const __half*>(weight), static_cast<__half*>(out), hidden, eps);
      break;
    case Dtype::kBF16:
      AddRmsNormKernel<__nv_bfloat16><<<grid, kNormThreads, 0, s>>>(
          static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(residual),
          static_cast<const __nv_bfloat16*>(weight), static_cast<__nv_bfloat16*>(out), hidden, eps);
      break;
  }
  CheckLaunch("AddRmsNorm");
}

void RopeAppend(const RopeAppendArgs& a, void* stream) {
  const int64_t n = a.num_tokens * (a.q_heads + a.kv_heads) * (a.head_dim / 2);
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  switch (a.dtype) {
    case Dtype::kF32: RopeAppendKernel<float><<<Blocks(n, 256), 256, 0, s>>>(a); break;
    case Dtype::kF16: RopeAppendKernel<__half><<<Blocks(n, 256), 256, 0, s>>>(a); break;
    case Dtype::kBF16: RopeAppendKernel<__nv_bfloat16><<<Blocks(n, 256), 256, 0, s>>>(a); break;
  }
  CheckLaunch("RopeAppend");
}

void SiluMul(Dtype dtype, const void* gate, const void* up, int64_t in_stride, void* out, int64_t rows,
             int64_t cols, void* stream) {
  if (rows == 0 || cols == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  constexpr int kSiluThreads = 256;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((cols + kSiluThreads - 1) / kSiluThreads, 64)),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  switch (dtype) {
    case Dtype::kF32:
      SiluMulKernel<float><<<grid, kSiluThreads, 0, s>>>(static_cast<const float*>(gate), static_cast<const float*>(up),
                                                        in_stride, static_cast<float*>(out), rows, cols);
      break;
    case Dtype::kF16:
      SiluMulKernel<__half><<<grid, kSiluThreads, 0, s>>>(static_cast<const __half*>(gate), static_cast<const __half*>(up),
                                                         in_stride, static_cast<__half*>(out), rows, cols);
      break;
    case Dtype::kBF16:
      SiluMulKernel<__nv_bfloat16><<<grid, kSiluThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(gate),
                                                                static_cast<const __nv_bfloat16*>(up), in_stride,
                                                                static_cast<__nv_bfloat16*>(out), rows, cols);
      break;
  }
  CheckLaunch("SiluMul");
}

}  // namespace tidal::rollout::cuda
