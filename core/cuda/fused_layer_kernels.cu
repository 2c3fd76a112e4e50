// Fused RMSNorm / RoPE / SwiGLU kernels of the training path (see fused_layer_kernels.h).
// All are memory-bound: each reads and writes its tensors once, in 16-byte vectors where the
// shapes and pointers allow (a scalar variant serves the rest), with fp32 math.
#include "core/cuda/fused_layer_kernels.h"

#include <algorithm>
#include <initializer_list>

#include "core/cuda/dtype_util.cuh"

namespace tidal::cuda {
namespace {

// RMSNorm: one block per row, a row slice of up to kMaxVec vectors of VEC values per thread held
// in registers between the reduction and the write, so x is read once. kMaxVec is the fewest
// that cover the row (1 up to 256 * VEC columns), so short rows do not pay registers (and
// occupancy) for the longest.
constexpr int kNormThreads = 256;
constexpr int kRegFloats = 32;
static_assert(kNormThreads * kRegFloats == kMaxRmsNormHidden);

// Sum over the block (blockDim.x a multiple of 32, at most kNormThreads), returned to every
// thread; the fixed order makes it deterministic.
__device__ __forceinline__ float BlockSum(float v, float* smem) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // the previous call's readers are done with smem
  if ((threadIdx.x & 31) == 0) smem[threadIdx.x >> 5] = v;
  __syncthreads();
  float total = 0.f;
  const int warps = blockDim.x >> 5;
  for (int i = 0; i < warps; ++i) total += smem[i];
  return total;
}

template <typename T, int VEC, int kMaxVec>
__global__ void __launch_bounds__(kNormThreads)
    RmsNormForwardKernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                         float* __restrict__ rstd, int64_t rows, int hidden, float eps) {
  static_assert(kMaxVec * VEC <= kRegFloats);
  __shared__ float smem[kNormThreads / 32];
  const int nvec = hidden / VEC;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * hidden;
    float xv[kMaxVec][VEC];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < kMaxVec; ++k) {
      const int c = threadIdx.x + k * blockDim.x;
      if (c < nvec) {
        LoadFloats<T, VEC>(xr + c * VEC, xv[k]);
#pragma unroll
        for (int i = 0; i < VEC; ++i) ss += xv[k][i] * xv[k][i];
      }
    }
    // HF: variance = mean(x_f32^2); x_f32 * rsqrt(variance + eps), cast to the dtype, then
    // weight * that (in the dtype). The same order as rollout/cuda/fused_layer.cu.
    const float r = rsqrtf(__fadd_rn(BlockSum(ss, smem) / static_cast<float>(hidden), eps));
    if (rstd != nullptr && threadIdx.x == 0) rstd[row] = r;
    T* yr = y + row * hidden;
#pragma unroll
    for (int k = 0; k < kMaxVec; ++k) {
      const int c = threadIdx.x + k * blockDim.x;
      if (c < nvec) {
        float wv[VEC], out[VEC];
        LoadFloats<T, VEC>(w + c * VEC, wv);
#pragma unroll
        for (int i = 0; i < VEC; ++i) out[i] = __fmul_rn(wv[i], Round<T>(__fmul_rn(xv[k][i], r)));
        StoreFloats<T, VEC>(yr + c * VEC, out);
      }
    }
  }
}

// Backward of y = w * round(x * r), r = rsqrt(mean(x^2) + eps), with the composite's roundings
// of its materialised intermediates (g = round(dy * w), the weight-grad products
// round(dy * round(x * r))):
//   dx = r * g - x * r^3 * sum(g * x) / hidden;  dw = sum over rows of round(dy * round(x r)).
// Each block walks rows blockIdx.x, +gridDim.x, ... and keeps its dw partial sums in registers
// (a thread owns the same columns on every row) until it writes them to partial[blockIdx.x].
template <typename T, int VEC, int kMaxVec>
__global__ void __launch_bounds__(kNormThreads)
    RmsNormBackwardKernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                          const float* __restrict__ rstd, T* __restrict__ dx,
                          float* __restrict__ partial, int64_t rows, int hidden) {
  static_assert(kMaxVec * VEC <= kRegFloats);
  __shared__ float smem[kNormThreads / 32];
  const int nvec = hidden / VEC;
  float acc[kMaxVec][VEC];
#pragma unroll
  for (int k = 0; k < kMaxVec; ++k) {
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[k][i] = 0.f;
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t off = row * hidden;
    const float r = rstd[row];
    float xv[kMaxVec][VEC], gv[kMaxVec][VEC];
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < kMaxVec; ++k) {
      const int c = threadIdx.x + k * blockDim.x;
      if (c < nvec) {
        float dyv[VEC], wv[VEC];
        LoadFloats<T, VEC>(x + off + c * VEC, xv[k]);
        LoadFloats<T, VEC>(dy + off + c * VEC, dyv);
        LoadFloats<T, VEC>(w + c * VEC, wv);
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          gv[k][i] = Round<T>(__fmul_rn(dyv[i], wv[i]));
          dot += gv[k][i] * xv[k][i];
          if (partial != nullptr) {
            acc[k][i] += Round<T>(__fmul_rn(dyv[i], Round<T>(__fmul_rn(xv[k][i], r))));
          }
        }
      }
    }
    const float c3 = BlockSum(dot, smem) / static_cast<float>(hidden) * r * r * r;
#pragma unroll
    for (int k = 0; k < kMaxVec; ++k) {
      const int c = threadIdx.x + k * blockDim.x;
      if (c < nvec) {
        float out[VEC];
#pragma unroll
        for (int i = 0; i < VEC; ++i) out[i] = __fsub_rn(__fmul_rn(gv[k][i], r), __fmul_rn(xv[k][i], c3));
        StoreFloats<T, VEC>(dx + off + c * VEC, out);
      }
    }
  }
  if (partial == nullptr) return;
  float* pr = partial + static_cast<int64_t>(blockIdx.x) * hidden;
#pragma unroll
  for (int k = 0; k < kMaxVec; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    if (c < nvec) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) pr[c * VEC + i] = acc[k][i];
    }
  }
}

// Second stage of the weight grad: dw[col] = sum over the partial rows, 32 columns x 32 row
// lanes per block, lanes combined in shared memory in a fixed order.
template <typename T>
__global__ void __launch_bounds__(1024)
    SumPartialsKernel(const float* __restrict__ partial, T* __restrict__ dw, int64_t blocks, int hidden) {
  __shared__ float smem[32][33];
  const int col = blockIdx.x * 32 + threadIdx.x;
  float s = 0.f;
  if (col < hidden) {
    for (int64_t b = threadIdx.y; b < blocks; b += 32) s += partial[b * hidden + col];
  }
  smem[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < hidden) {
    float total = 0.f;
    for (int i = 0; i < 32; ++i) total += smem[i][threadIdx.x];
    dw[col] = FromFloat<T>(total);
  }
}

// ApplyRope's composite: x * cos + rotate_half(x) * sin in fp32, one rounding at the end:
// out1 = x1 c - x2 s, out2 = x2 c + x1 s (s already negated for the inverse rotation).
template <typename T, int VEC>
__device__ __forceinline__ void RotateHeads(const T* src, T* dst, int64_t heads, int64_t head_dim,
                                            int64_t half, const float (&c)[VEC], const float (&s)[VEC]) {
  for (int64_t h = 0; h < heads; ++h) {
    float x1[VEC], x2[VEC], o1[VEC], o2[VEC];
    LoadFloats<T, VEC>(src + h * head_dim, x1);
    LoadFloats<T, VEC>(src + h * head_dim + half, x2);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      o1[j] = __fadd_rn(__fmul_rn(x1[j], c[j]), __fmul_rn(-x2[j], s[j]));
      o2[j] = __fadd_rn(__fmul_rn(x2[j], c[j]), __fmul_rn(x1[j], s[j]));
    }
    StoreFloats<T, VEC>(dst + h * head_dim, o1);
    StoreFloats<T, VEC>(dst + h * head_dim + half, o2);
  }
}

template <typename T, int VEC>
__global__ void RopeKernel(const RopeArgs a) {
  const int64_t half = a.head_dim / 2, chunks = half / VEC;
  const int64_t n = a.tokens * chunks;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < n;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = idx / chunks, i0 = (idx - t * chunks) * VEC;
    // As ApplyRope: freqs = positions.to(float) * inv_freq (fp32), then cos and sin of it.
    const float pos = static_cast<float>(a.positions[t]);
    float c[VEC], s[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float angle = __fmul_rn(pos, a.inv_freq[i0 + j]);
      c[j] = cosf(angle);
      s[j] = a.inverse ? -sinf(angle) : sinf(angle);
    }
    RotateHeads<T, VEC>(static_cast<const T*>(a.q) + t * a.q_stride + i0,
                        static_cast<T*>(a.q_out) + t * a.q_out_stride + i0, a.q_heads, a.head_dim, half, c, s);
    RotateHeads<T, VEC>(static_cast<const T*>(a.k) + t * a.k_stride + i0,
                        static_cast<T*>(a.k_out) + t * a.k_out_stride + i0, a.kv_heads, a.head_dim, half, c, s);
    if (a.v != nullptr) {
      const T* src = static_cast<const T*>(a.v) + t * a.v_stride + i0;
      T* dst = static_cast<T*>(a.v_out) + t * a.v_out_stride + i0;
      for (int64_t h = 0; h < a.kv_heads; ++h) {
        *reinterpret_cast<Pack<T, VEC>*>(dst + h * a.head_dim) =
            *reinterpret_cast<const Pack<T, VEC>*>(src + h * a.head_dim);
        *reinterpret_cast<Pack<T, VEC>*>(dst + h * a.head_dim + half) =
            *reinterpret_cast<const Pack<T, VEC>*>(src + h * a.head_dim + half);
      }
    }
  }
}

// The composite is at::silu(gate) * up: silu rounded to T (its own tensor), then the product.
template <typename T, int VEC>
__global__ void SwiGluForwardKernel(const T* __restrict__ gate_up, T* __restrict__ out, int64_t rows,
                                    int64_t inter) {
  const int64_t chunks = inter / VEC, n = rows * chunks;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < n;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = idx / chunks, c = (idx - r * chunks) * VEC;
    const T* g = gate_up + r * 2 * inter + c;
    float gv[VEC], uv[VEC], o[VEC];
    LoadFloats<T, VEC>(g, gv);
    LoadFloats<T, VEC>(g + inter, uv);
#pragma unroll
    for (int i = 0; i < VEC; ++i) o[i] = __fmul_rn(Round<T>(gv[i] / (1.0f + expf(-gv[i]))), uv[i]);
    StoreFloats<T, VEC>(out + r * inter + c, o);
  }
}

// Backward of the composite: d(silu out) = round(dy * up), d(up) = round(dy * round(silu(gate))),
// d(gate) = ATen's silu_backward of d(silu out): dy * s * (1 + x (1 - s)), s = sigmoid(x).
template <typename T, int VEC>
__global__ void SwiGluBackwardKernel(const T* __restrict__ dy, const T* __restrict__ gate_up,
                                     T* __restrict__ dgate_up, int64_t rows, int64_t inter) {
  const int64_t chunks = inter / VEC, n = rows * chunks;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < n;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = idx / chunks, c = (idx - r * chunks) * VEC;
    const int64_t gi = r * 2 * inter + c;
    float dyv[VEC], gv[VEC], uv[VEC], dg[VEC], du[VEC];
    LoadFloats<T, VEC>(dy + r * inter + c, dyv);
    LoadFloats<T, VEC>(gate_up + gi, gv);
    LoadFloats<T, VEC>(gate_up + gi + inter, uv);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const float x = gv[i];
      const float denom = 1.0f + expf(-x);
      const float s = 1.0f / denom;
      const float ds = Round<T>(__fmul_rn(dyv[i], uv[i]));
      dg[i] = ds * s * (1.0f + x * (1.0f - s));
      du[i] = __fmul_rn(dyv[i], Round<T>(x / denom));
    }
    StoreFloats<T, VEC>(dgate_up + gi, dg);
    StoreFloats<T, VEC>(dgate_up + gi + inter, du);
  }
}

template <typename F>
void Dispatch(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::kF32: f(float{}); break;
    case Dtype::kF16: f(__half{}); break;
    case Dtype::kBF16: f(__nv_bfloat16{}); break;
  }
}

template <typename T>
constexpr int VecOf() { return static_cast<int>(16 / sizeof(T)); }

unsigned GridFor(int64_t n, int threads) {
  // Grid-stride kernels: enough blocks to fill an H200 several times over, never more than n needs.
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 132 * 32)));
}

int NormThreads(int64_t nvec) {
  return static_cast<int>(std::clamp<int64_t>((nvec + 31) / 32 * 32, 32, kNormThreads));
}

}  // namespace

void RmsNormForward(Dtype dtype, const void* x, const void* weight, void* y, float* rstd,
                    int64_t rows, int64_t hidden, float eps, void* stream) {
  if (rows == 0) return;
  if (hidden <= 0 || hidden > kMaxRmsNormHidden) {
    throw std::invalid_argument("RmsNormForward: hidden " + std::to_string(hidden) + " outside 1.." +
                                std::to_string(kMaxRmsNormHidden));
  }
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 30));
  Dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = VecOf<T>();
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(weight);
    T* yp = static_cast<T*>(y);
    const int h = static_cast<int>(hidden);
    if (hidden % kVec == 0 && Aligned16(x) && Aligned16(weight) && Aligned16(y)) {
      const int threads = NormThreads(hidden / kVec);
      if (hidden <= kNormThreads * kVec) {
        RmsNormForwardKernel<T, kVec, 1><<<grid, threads, 0, s>>>(xp, wp, yp, rstd, rows, h, eps);
      } else {
        RmsNormForwardKernel<T, kVec, kRegFloats / kVec><<<grid, threads, 0, s>>>(xp, wp, yp, rstd, rows, h, eps);
      }
    } else {
      RmsNormForwardKernel<T, 1, kRegFloats><<<grid, NormThreads(hidden), 0, s>>>(xp, wp, yp, rstd, rows, h, eps);
    }
  });
  CheckLaunch("RmsNormForward");
}

int64_t RmsNormBackwardBlocks(int64_t rows, int sm_count) {
  // Enough resident blocks per SM to keep loads in flight (each walks its rows one at a time);
  // the partial buffer is blocks * hidden fp32 (6.5 MB for 132 SMs and hidden 1536).
  return std::max<int64_t>(1, std::min<int64_t>(rows, int64_t{8} * std::max(sm_count, 1)));
}

void RmsNormBackward(Dtype dtype, const void* dy, const void* x, const void* weight,
                     const float* rstd, void* dx, void* dweight, float* partial,
                     int64_t partial_blocks, int64_t rows, int64_t hidden, void* stream) {
  if (hidden <= 0 || hidden > kMaxRmsNormHidden) {
    throw std::invalid_argument("RmsNormBackward: hidden " + std::to_string(hidden) + " outside 1.." +
                                std::to_string(kMaxRmsNormHidden));
  }
  if (dweight != nullptr && (partial == nullptr || partial_blocks < 1)) {
    throw std::invalid_argument("RmsNormBackward: the weight grad needs a partial-sum buffer");
  }
  auto s = static_cast<cudaStream_t>(stream);
  float* part = dweight != nullptr ? partial : nullptr;
  const unsigned grid = static_cast<unsigned>(
      dweight != nullptr ? partial_blocks : std::max<int64_t>(1, std::min<int64_t>(rows, int64_t{1} << 30)));
  Dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = VecOf<T>();
    const T* dyp = static_cast<const T*>(dy);
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(weight);
    T* dxp = static_cast<T*>(dx);
    if (rows > 0) {
      const int h = static_cast<int>(hidden);
      if (hidden % kVec == 0 && Aligned16(dy) && Aligned16(x) && Aligned16(weight) && Aligned16(dx)) {
        const int threads = NormThreads(hidden / kVec);
        if (hidden <= kNormThreads * kVec) {
          RmsNormBackwardKernel<T, kVec, 1><<<grid, threads, 0, s>>>(dyp, xp, wp, rstd, dxp, part, rows, h);
        } else {
          RmsNormBackwardKernel<T, kVec, kRegFloats / kVec><<<grid, threads, 0, s>>>(dyp, xp, wp, rstd, dxp, part,
                                                                                     rows, h);
        }
      } else {
        RmsNormBackwardKernel<T, 1, kRegFloats><<<grid, NormThreads(hidden), 0, s>>>(dyp, xp, wp, rstd, dxp, part,
                                                                                      rows, h);
      }
      CheckLaunch("RmsNormBackward");
    } else if (part != nullptr) {
      cudaError_t e = cudaMemsetAsync(part, 0, sizeof(float) * hidden * partial_blocks, s);
      if (e != cudaSuccess) throw std::runtime_error(std::string("RmsNormBackward memset: ") + cudaGetErrorString(e));
    }
    if (dweight != nullptr) {
      const dim3 threads(32, 32);
      SumPartialsKernel<T><<<static_cast<unsigned>((hidden + 31) / 32), threads, 0, s>>>(
          part, static_cast<T*>(dweight), rows > 0 ? partial_blocks : 1, static_cast<int>(hidden));
      CheckLaunch("RmsNormBackward(sum partials)");
    }
  });
}

void Rope(const RopeArgs& a, void* stream) {
  if (a.head_dim <= 0 || a.head_dim % 2 != 0) {
    throw std::invalid_argument("Rope: head_dim " + std::to_string(a.head_dim) + " must be even and positive");
  }
  const int64_t half = a.head_dim / 2;
  if (a.tokens == 0 || (a.q_heads == 0 && a.kv_heads == 0)) return;
  auto s = static_cast<cudaStream_t>(stream);
  Dispatch(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = VecOf<T>();
    bool vec = half % kVec == 0;
    for (const void* p : std::initializer_list<const void*>{a.q, a.k, a.q_out, a.k_out}) vec = vec && Aligned16(p);
    for (int64_t st : {a.q_stride, a.k_stride, a.q_out_stride, a.k_out_stride}) vec = vec && st % kVec == 0;
    if (a.v != nullptr) {
      vec = vec && Aligned16(a.v) && Aligned16(a.v_out) && a.v_stride % kVec == 0 && a.v_out_stride % kVec == 0;
    }
    constexpr int kThreads = 256;
    if (vec) {
      RopeKernel<T, kVec><<<GridFor(a.tokens * (half / kVec), kThreads), kThreads, 0, s>>>(a);
    } else {
      RopeKernel<T, 1><<<GridFor(a.tokens * half, kThreads), kThreads, 0, s>>>(a);
    }
  });
  CheckLaunch("Rope");
}

void SwiGluForward(Dtype dtype, const void* gate_up, void* out, int64_t rows, int64_t inter,
                   void* stream) {
  if (rows == 0 || inter == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  constexpr int kThreads = 256;
  Dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = VecOf<T>();
    const T* gu = static_cast<const T*>(gate_up);
    T* o = static_cast<T*>(out);
    if (inter % kVec == 0 && Aligned16(gate_up) && Aligned16(out)) {
      SwiGluForwardKernel<T, kVec><<<GridFor(rows * (inter / kVec), kThreads), kThreads, 0, s>>>(gu, o, rows, inter);
    } else {
      SwiGluForwardKernel<T, 1><<<GridFor(rows * inter, kThreads), kThreads, 0, s>>>(gu, o, rows, inter);
    }
  });
  CheckLaunch("SwiGluForward");
}

void SwiGluBackward(Dtype dtype, const void* dy, const void* gate_up, void* dgate_up,
                    int64_t rows, int64_t inter, void* stream) {
  if (rows == 0 || inter == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  constexpr int kThreads = 256;
  Dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = VecOf<T>();
    const T* dyp = static_cast<const T*>(dy);
    const T* gu = static_cast<const T*>(gate_up);
    T* dgu = static_cast<T*>(dgate_up);
    if (inter % kVec == 0 && Aligned16(dy) && Aligned16(gate_up) && Aligned16(dgate_up)) {
      SwiGluBackwardKernel<T, kVec><<<GridFor(rows * (inter / kVec), kThreads), kThreads, 0, s>>>(dyp, gu, dgu, rows, inter);
    } else {
      SwiGluBackwardKernel<T, 1><<<GridFor(rows * inter, kThreads), kThreads, 0, s>>>(dyp, gu, dgu, rows, inter);
    }
  });
  CheckLaunch("SwiGluBackward");
}

}  // namespace tidal::cuda
