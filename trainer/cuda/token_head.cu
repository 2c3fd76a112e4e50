// Token-head kernels (see trainer/token_head.h for the math, token_head_kernels.h for the entry
// points). One block per row; each thread walks the row in 16-byte vectors (a scalar loop when
// the row length or base address does not allow them).
//   stats: one pass keeps (m, s, a) = (running max, sum exp(z - m), sum exp(z - m) * (z - m)),
//          rescaled when the max grows and merged across threads the same way; then
//          lse = m + log s, entropy = log s - a / s. Keeping a relative to the max (rather than
//          sum p * z) avoids cancelling two large numbers when the distribution is peaked.
//   grad:  one pass rewrites each logit with its gradient.
#include <cmath>
#include <cstdint>

#include "core/cuda/dtype_util.cuh"
#include "trainer/cuda/token_head_kernels.h"

namespace tidal::trainer::cuda {
namespace {

using namespace ::tidal::cuda;  // ToFloat, FromFloat, LoadFloats, StoreFloats, CheckLaunch

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

template <typename T>
constexpr int kVec = 16 / sizeof(T);

struct Acc {
  float m, s, a;  // max, sum exp(z - m), sum exp(z - m) * (z - m); s == 0: nothing seen
};

__device__ __forceinline__ Acc Merge(Acc x, Acc y) {
  if (x.s == 0.f) return y;
  if (y.s == 0.f) return x;
  const float m = fmaxf(x.m, y.m);
  const float dx = x.m - m, dy = y.m - m;
  const float cx = expf(dx), cy = expf(dy);
  return {m, x.s * cx + y.s * cy, cx * (x.a + dx * x.s) + cy * (y.a + dy * y.s)};
}

// Folds `n` values into acc: one rescale for the group, then one exp per value.
template <int N>
__device__ __forceinline__ void Fold(Acc& acc, const float (&z)[N]) {
  float vm = z[0];
#pragma unroll
  for (int i = 1; i < N; ++i) vm = fmaxf(vm, z[i]);
  if (vm > acc.m) {
    if (acc.s > 0.f) {
      const float d = acc.m - vm, c = expf(d);
      acc.a = c * (acc.a + d * acc.s);
      acc.s *= c;
    }
    acc.m = vm;
  }
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const float d = z[i] - acc.m, e = expf(d);
    acc.s += e;
    acc.a += e > 0.f ? e * d : 0.f;  // e == 0 for z = -inf, where d * e would be NaN
  }
}

__device__ Acc BlockMerge(Acc acc, Acc* buf) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    Acc other{__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o),
              __shfl_xor_sync(0xffffffffu, acc.a, o)};
    acc = Merge(acc, other);
  }
  if (lane == 0) buf[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = lane < kWarps ? buf[lane] : Acc{-INFINITY, 0.f, 0.f};
    for (int o = 16; o > 0; o >>= 1) {
      Acc other{__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o),
                __shfl_xor_sync(0xffffffffu, acc.a, o)};
      acc = Merge(acc, other);
    }
    if (lane == 0) buf[kWarps] = acc;
  }
  __syncthreads();
  return buf[kWarps];
}

template <typename T>
__global__ void __launch_bounds__(kThreads) StatsKernel(const T* logits, const int64_t* targets, int64_t v,
                                                        float inv_t, bool vec, float* logprobs, float* lse,
                                                        float* entropy) {
  __shared__ Acc buf[kWarps + 1];
  const int64_t row = blockIdx.x;
  const T* x = logits + row * v;
  Acc acc{-INFINITY, 0.f, 0.f};
  if (vec) {
    for (int64_t i = int64_t{threadIdx.x} * kVec<T>; i < v; i += int64_t{kThreads} * kVec<T>) {
      float z[kVec<T>];
      LoadFloats<T, kVec<T>>(x + i, z);
#pragma unroll
      for (int j = 0; j < kVec<T>; ++j) z[j] *= inv_t;
      Fold(acc, z);
    }
  } else {
    for (int64_t i = threadIdx.x; i < v; i += kThreads) {
      const float z[1] = {ToFloat(x[i]) * inv_t};
      Fold(acc, z);
    }
  }
  acc = BlockMerge(acc, buf);
  if (threadIdx.x == 0) {
    const float log_s = logf(acc.s), l = acc.m + log_s;
    const int64_t t = targets[row];
    // An out-of-range target cannot be read; NaN makes it visible instead of reading past the row.
    logprobs[row] = (t >= 0 && t < v) ? ToFloat(x[t]) * inv_t - l : NAN;
    lse[row] = l;
    if (entropy != nullptr) entropy[row] = log_s - acc.a / acc.s;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) GradKernel(T* logits, const int64_t* targets, int64_t v, float inv_t,
                                                       bool vec, const float* lse, const float* entropy,
                                                       const float* g_lp, const float* g_ent) {
  const int64_t row = blockIdx.x;
  T* x = logits + row * v;
  const int64_t t = targets[row];
  const float l = lse[row], glp = g_lp[row];
  const float gent = g_ent != nullptr ? g_ent[row] : 0.f;
  const float h = g_ent != nullptr ? entropy[row] : 0.f;
  auto grad = [&](float raw, int64_t j) {
    const float d = raw * inv_t - l, p = expf(d);
    float g = -glp * p;
    if (g_ent != nullptr) g -= gent * p * (d + h);
    if (j == t) g += glp;
    return g * inv_t;
  };
  if (vec) {
    for (int64_t i = int64_t{threadIdx.x} * kVec<T>; i < v; i += int64_t{kThreads} * kVec<T>) {
      float z[kVec<T>];
      LoadFloats<T, kVec<T>>(x + i, z);
#pragma unroll
      for (int j = 0; j < kVec<T>; ++j) z[j] = grad(z[j], i + j);
      StoreFloats<T, kVec<T>>(x + i, z);
    }
  } else {
    for (int64_t i = threadIdx.x; i < v; i += kThreads) x[i] = FromFloat<T>(grad(ToFloat(x[i]), i));
  }
}

template <typename T>
bool Vectorised(const void* p, int64_t v) {
  return v % kVec<T> == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <typename T>
void Stats(const void* logits, const int64_t* targets, int64_t n, int64_t v, float inv_t, float* logprobs,
           float* lse, float* entropy, cudaStream_t s) {
  StatsKernel<T><<<static_cast<unsigned>(n), kThreads, 0, s>>>(
      static_cast<const T*>(logits), targets, v, inv_t, Vectorised<T>(logits, v), logprobs, lse, entropy);
  CheckLaunch("TokenHeadStats");
}

template <typename T>
void Grad(void* logits, const int64_t* targets, int64_t n, int64_t v, float inv_t, const float* lse,
          const float* entropy, const float* g_lp, const float* g_ent, cudaStream_t s) {
  GradKernel<T><<<static_cast<unsigned>(n), kThreads, 0, s>>>(static_cast<T*>(logits), targets, v, inv_t,
                                                               Vectorised<T>(logits, v), lse, entropy, g_lp, g_ent);
  CheckLaunch("TokenHeadGrad");
}

}  // namespace

void TokenHeadStats(Dtype dtype, const void* logits, const int64_t* targets, int64_t n, int64_t v, float inv_temp,
                    float* logprobs, float* lse, float* entropy, void* stream) {
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Dtype::kF32: return Stats<float>(logits, targets, n, v, inv_temp, logprobs, lse, entropy, s);
    case Dtype::kF16: return Stats<__half>(logits, targets, n, v, inv_temp, logprobs, lse, entropy, s);
    case Dtype::kBF16: return Stats<__nv_bfloat16>(logits, targets, n, v, inv_temp, logprobs, lse, entropy, s);
  }
}

void TokenHeadGrad(Dtype dtype, void* logits, const int64_t* targets, int64_t n, int64_t v, float inv_temp,
                   const float* lse, const float* entropy, const float* g_lp, const float* g_ent, void* stream) {
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Dtype::kF32: return Grad<float>(logits, targets, n, v, inv_temp, lse, entropy, g_lp, g_ent, s);
    case Dtype::kF16: return Grad<__half>(logits, targets, n, v, inv_temp, lse, entropy, g_lp, g_ent, s);
    case Dtype::kBF16: return Grad<__nv_bfloat16>(logits, targets, n, v, inv_temp, lse, entropy, g_lp, g_ent, s);
  }
}

}  // namespace tidal::trainer::cuda
