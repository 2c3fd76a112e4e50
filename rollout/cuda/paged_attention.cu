// Attention over the paged KV cache (see kernels.h): one kernel for decode rows and prefill
// chunks alike. A thread block serves one (query token, kv head) pair: the G query heads of
// that kv head read each key once. Keys are walked in tiles of kTile through the block table
// (no gather), with an online softmax in fp32:
//   1. each thread loads one key row (16-byte vector loads) and scores it against the G
//      queries held in shared memory;
//   2. one warp per query head takes the tile's max, exponentiates in place and rescales;
//      the same thread also copies the key's value row into shared memory (when a tile of
//      values fits in 32 KB), so the tile's global loads are all in flight at once;
//   3. threads own (head, dim pair) outputs and accumulate p * v over the tile from shared
//      memory (or, for fp32 with head_dim 128, from global memory, rows coalesced).
// The output is divided by the softmax sum at the end; accumulation order is fixed by the
// tile walk, so a row's result does not depend on which other rows share the launch.
#include <cmath>

#include "rollout/cuda/dtype_util.cuh"
#include "rollout/cuda/kernels.h"

namespace tidal::rollout::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = kThreads;  // one key per thread in phase 1
constexpr int kMaxGroup = 8;

__device__ __forceinline__ float WarpMax(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float WarpSum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) PagedAttentionKernel(const PagedAttentionArgs a) {
  const int t = blockIdx.x, h = blockIdx.y;
  const int hq = static_cast<int>(a.q_heads), hkv = static_cast<int>(a.kv_heads), group = hq / hkv;
  const int bs = static_cast<int>(a.block_size);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr bool kVShared = kTile * D * sizeof(T) <= 32768;
  __shared__ __align__(16) float qs[kMaxGroup * D];
  __shared__ float s[kMaxGroup * kTile];
  __shared__ int64_t row[kTile];
  __shared__ __align__(16) T vt[kVShared ? kTile * D : 8];
  __shared__ float m_run[kMaxGroup], l_run[kMaxGroup], alpha[kMaxGroup];

  const int64_t q_off = (static_cast<int64_t>(t) * hq + static_cast<int64_t>(h) * group) * D;
  const T* q = static_cast<const T*>(a.q) + q_off;
  for (int i = threadIdx.x; i < group * D; i += kThreads) qs[i] = ToFloat(q[i]) * a.scale;
  if (threadIdx.x < group) {
    m_run[threadIdx.x] = -INFINITY;
    l_run[threadIdx.x] = 0.f;
  }
  const int len = a.kv_len[t];
  const int32_t* table = a.block_tables + (len > 0 ? int64_t{a.token_seq[t]} * a.table_stride : 0);
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);
  constexpr int kPairs = (kMaxGroup * D / 2 + kThreads - 1) / kThreads;
  float acc[kPairs][2];
#pragma unroll
  for (int k = 0; k < kPairs; ++k) acc[k][0] = acc[k][1] = 0.f;
  __syncthreads();

  for (int start = 0; start < len; start += kTile) {
    const int n = min(kTile, len - start);
    if (threadIdx.x < n) {
      const int pos = start + threadIdx.x;
      const int64_t off = ((int64_t{table[pos / bs]} * bs + pos % bs) * hkv + h) * D;
      row[threadIdx.x] = off;
      constexpr int kVec = 16 / sizeof(T), kChunks = D / kVec;
      uint4 raw[kChunks];
      const uint4* kp = reinterpret_cast<const uint4*>(kc + off);
#pragma unroll
      for (int c = 0; c < kChunks; ++c) raw[c] = kp[c];
      if constexpr (kVShared) {
        const uint4* vp = reinterpret_cast<const uint4*>(vc + off);
        uint4* vd = reinterpret_cast<uint4*>(vt + threadIdx.x * D);
#pragma unroll
        for (int c = 0; c < kChunks; ++c) vd[c] = vp[c];
      }
      for (int g = 0; g < group; ++g) {
        const float4* q4 = reinterpret_cast<const float4*>(qs + g * D);
        float dot = 0.f;
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          const T* e = reinterpret_cast<const T*>(&raw[c]);
#pragma unroll
          for (int i = 0; i < kVec / 4; ++i) {
            const float4 qq = q4[c * (kVec / 4) + i];
            dot += qq.x * ToFloat(e[4 * i]) + qq.y * ToFloat(e[4 * i + 1]) +
                   qq.z * ToFloat(e[4 * i + 2]) + qq.w * ToFloat(e[4 * i + 3]);
          }
        }
        s[g * kTile + threadIdx.x] = dot;
      }
    }
    __syncthreads();
    for (int g = warp; g < group; g += kWarps) {
      float* sg = s + g * kTile;
      float mx = -INFINITY;
      for (int i = lane; i < n; i += 32) mx = fmaxf(mx, sg[i]);
      mx = WarpMax(mx);
      const float m_old = m_run[g];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int i = lane; i < n; i += 32) {
        const float p = __expf(sg[i] - m_new);
        sg[i] = p;
        sum += p;
      }
      sum = WarpSum(sum);
      if (lane == 0) {
        const float al = __expf(m_old - m_new);  // 0 on the first tile (m_old = -inf)
        alpha[g] = al;
        l_run[g] = l_run[g] * al + sum;
        m_run[g] = m_new;
      }
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kPairs; ++k) {
      const int idx = threadIdx.x + k * kThreads;
      if (idx < group * D / 2) {
        const int g = idx / (D / 2), d = (idx % (D / 2)) * 2;
        const float al = alpha[g];
        float a0 = acc[k][0] * al, a1 = acc[k][1] * al;
        const float* sg = s + g * kTile;
#pragma unroll 8
        for (int j = 0; j < n; ++j) {
          const float2 vv = kVShared ? LoadPair(vt + j * D + d) : LoadPair(vc + row[j] + d);
          a0 += sg[j] * vv.x;
          a1 += sg[j] * vv.y;
        }
        acc[k][0] = a0;
        acc[k][1] = a1;
      }
    }
    __syncthreads();  // s and row are rewritten by the next tile
  }

  T* o = static_cast<T*>(a.out) + q_off;
#pragma unroll
  for (int k = 0; k < kPairs; ++k) {
    const int idx = threadIdx.x + k * kThreads;
    if (idx < group * D / 2) {
      const int g = idx / (D / 2), d = (idx % (D / 2)) * 2;
      const float inv = l_run[g] > 0.f ? 1.f / l_run[g] : 0.f;
      o[g * D + d] = FromFloat<T>(acc[k][0] * inv);
      o[g * D + d + 1] = FromFloat<T>(acc[k][1] * inv);
    }
  }
}

template <typename T>
void Launch(const PagedAttentionArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.num_tokens), static_cast<unsigned>(a.kv_heads));
  switch (a.head_dim) {
    case 32: PagedAttentionKernel<T, 32><<<grid, kThreads, 0, stream>>>(a); break;
    case 64: PagedAttentionKernel<T, 64><<<grid, kThreads, 0, stream>>>(a); break;
    case 128: PagedAttentionKernel<T, 128><<<grid, kThreads, 0, stream>>>(a); break;
    default: throw std::runtime_error("PagedAttention: head_dim " + std::to_string(a.head_dim) +
                                      " not instantiated (32, 64, 128)");
  }
  CheckLaunch("PagedAttention");
}

}  // namespace

bool PagedAttentionSupports(int64_t head_dim, int64_t group) {
  return (head_dim == 32 || head_dim == 64 || head_dim == 128) && group >= 1 && group <= kMaxGroup;
}

void PagedAttention(const PagedAttentionArgs& a, void* stream) {
  if (a.kv_heads <= 0 || a.q_heads % a.kv_heads != 0 ||
      !PagedAttentionSupports(a.head_dim, a.q_heads / a.kv_heads)) {
    throw std::runtime_error("PagedAttention: unsupported heads " + std::to_string(a.q_heads) + "/" +
                             std::to_string(a.kv_heads) + " x head_dim " + std::to_string(a.head_dim));
  }
  if (a.num_tokens == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  switch (a.dtype) {
    case Dtype::kF32: Launch<float>(a, s); break;
    case Dtype::kF16: Launch<__half>(a, s); break;
    case Dtype::kBF16: Launch<__nv_bfloat16>(a, s); break;
  }
}

}  // namespace tidal::rollout::cuda
