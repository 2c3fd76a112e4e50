// Attention over the paged KV cache (see kernels.h): one kernel for decode rows and prefill
// chunks alike. A thread block serves one (query token, kv head) pair: the G query heads of
// that kv head read each key once. Keys are walked in tiles (128 keys; 64 for head_dim 128) through the block table
// (no gather), with an online softmax in fp32:
//   0. the tile's key and value rows are copied into shared memory whole, consecutive threads
//      on consecutive 16-byte vectors of a row (coalesced: a warp reads whole 128-byte lines,
//      where one row per thread made every load touch 32 lines), rows padded against bank
//      conflicts;
//   1. each thread takes one key, converts it to fp32 once and scores it against the G
//      queries held in shared memory;
//   2. one warp per query head takes the tile's max, exponentiates in place and rescales;
//   3. warp w accumulates p * v over groups of 4 keys (4w.., 4w + 16..) for all G heads, lane l
//      owning value pairs l, l + 32 (one 16-byte load of 4 probabilities feeds 8 FMAs a pair);
//      at a chunk's end the four warps' partial outputs are summed in warp order.
// Split-KV: a row's keys are cut into chunks of kPagedAttentionChunk. Each chunk gets its own
// softmax state (max, sum, unnormalised output); the chunks are folded in order with one
// expression (FoldScales/FoldValue). Without a split the block folds its chunks as it goes;
// with one (decode-sized launches, where (token, kv head) blocks alone would leave most SMs
// idle) block z takes chunks z, z + S, ..., writes each chunk's state to the workspace, and
// MergeChunksKernel folds them. The chunk boundaries depend only on the row's own length and
// the fold order is fixed, so a row's result does not depend on the split, nor on which
// other rows share the launch.
#include <algorithm>
#include <cmath>

#include "core/cuda/dtype_util.cuh"
#include "rollout/cuda/kernels.h"

namespace tidal::rollout::cuda {
using namespace ::tidal::cuda;  // ToFloat, FromFloat, CheckLaunch (core/cuda/dtype_util.cuh)
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = kThreads;  // keys per tile (one per thread in phase 1) below head_dim 128
constexpr int kMaxGroup = 8;

__device__ __forceinline__ float WarpMax(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float WarpSum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// One chunk's softmax state folded into a running one: the same arithmetic in the attention
// kernel (no split) and in the merge kernel (split), explicitly rounded so the compiler cannot
// contract it differently in the two places.
__device__ __forceinline__ void FoldScales(float m_run, float m_chunk, float& m_new, float& a, float& b) {
  m_new = fmaxf(m_run, m_chunk);
  a = __expf(m_run - m_new);  // 0 while nothing is folded yet (m_run = -inf)
  b = __expf(m_chunk - m_new);
}
__device__ __forceinline__ float FoldValue(float run, float a, float chunk, float b) {
  return __fmaf_rn(chunk, b, __fmul_rn(run, a));
}
__device__ __forceinline__ float* ChunkState(const PagedAttentionArgs& a, int t, int head, int chunk, int d) {
  return a.workspace + ((int64_t{t} * a.q_heads + head) * a.max_chunks + chunk) * (d + 2);
}

// Shared memory of one block (dynamic: the key and value tiles of head_dim 128 pass 48 KB):
// the G scaled queries, the tile's scores, and the tile's keys and values, rows padded by 16
// bytes so that threads reading or writing consecutive rows hit different banks. The chunk-end
// reduction of the warps' partial outputs reuses the value tile.
// head_dim 128 walks tiles of 64 keys, two threads to a key in phase 1, so that its tiles take
// the same shared memory as head_dim 64's 128 keys.
template <typename T, int D>
struct Smem {
  static constexpr int kKeys = D >= 128 ? 64 : kTile;                  // keys per tile
  static constexpr int kRow = D + 16 / static_cast<int>(sizeof(T));  // padded row, elements
  static constexpr size_t kQs = sizeof(float) * kMaxGroup * D;
  static constexpr size_t kS = sizeof(float) * kMaxGroup * kKeys;
  static constexpr size_t kTileBytes = sizeof(T) * kKeys * kRow;
  static constexpr size_t kBytes = kQs + kS + 2 * kTileBytes;
  static_assert(kTileBytes >= sizeof(float) * kWarps * kMaxGroup * D, "reduce area");
  static_assert(kPagedAttentionChunk % kKeys == 0 && kThreads % kKeys == 0, "tile shape");
};

template <typename T, int D, bool kSplit>
__global__ void __launch_bounds__(kThreads, D <= 64 ? 5 : 3) PagedAttentionKernel(const PagedAttentionArgs a) {
  using S = Smem<T, D>;
  constexpr int kRow = S::kRow, kKeys = S::kKeys;
  constexpr int kThreadsPerKey = kThreads / kKeys;
  const int t = blockIdx.x, h = blockIdx.y, z = blockIdx.z, splits = gridDim.z;
  const int hq = static_cast<int>(a.q_heads), hkv = static_cast<int>(a.kv_heads), group = hq / hkv;
  const int bs = static_cast<int>(a.block_size);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int kVec = 16 / sizeof(T);                          // elements per 16-byte vector
  constexpr int kVecsPerRow = D / kVec;
  constexpr int kPairsPerLane = (D / 2 + 31) / 32;             // phase 3: a lane's value pairs
  constexpr int kElems = (kMaxGroup * D + kThreads - 1) / kThreads;  // a thread's output elements
  extern __shared__ __align__(16) unsigned char smem[];
  float* qs = reinterpret_cast<float*>(smem);
  float* s = reinterpret_cast<float*>(smem + S::kQs);
  T* kt = reinterpret_cast<T*>(smem + S::kQs + S::kS);
  T* vt = reinterpret_cast<T*>(smem + S::kQs + S::kS + S::kTileBytes);
  float* red = reinterpret_cast<float*>(vt);
  __shared__ int64_t row[kKeys];
  __shared__ float m_run[kMaxGroup], l_run[kMaxGroup], alpha[kMaxGroup];
  __shared__ float m_tot[kMaxGroup], l_tot[kMaxGroup], fold_a[kMaxGroup], fold_b[kMaxGroup];

  const int64_t q_off = (static_cast<int64_t>(t) * hq + static_cast<int64_t>(h) * group) * D;
  const T* q = static_cast<const T*>(a.q) + q_off;
  for (int i = threadIdx.x; i < group * D; i += kThreads) qs[i] = ToFloat(q[i]) * a.scale;
  if (threadIdx.x < group) {
    m_tot[threadIdx.x] = -INFINITY;
    l_tot[threadIdx.x] = 0.f;
  }
  const int len = a.kv_len[t];
  const int chunks = (len + kPagedAttentionChunk - 1) / kPagedAttentionChunk;
  const int32_t* table = a.block_tables + (len > 0 ? int64_t{a.token_seq[t]} * a.table_stride : 0);
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);
  // Phase 3 ownership: warp w takes keys 4w..4w+3, 4w+16.., of a tile for every query head;
  // lane l the value pairs l, l + 32 (a 16-byte load of 4 probabilities feeds 8 FMAs per pair).
  float acc[kMaxGroup][kPairsPerLane][2];
  float tot[kElems];
#pragma unroll
  for (int k = 0; k < kElems; ++k) tot[k] = 0.f;

  for (int c = z; c < chunks && (!kSplit || c < a.max_chunks); c += splits) {
    if (threadIdx.x < group) {
      m_run[threadIdx.x] = -INFINITY;
      l_run[threadIdx.x] = 0.f;
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
#pragma unroll
      for (int i = 0; i < kPairsPerLane; ++i) acc[g][i][0] = acc[g][i][1] = 0.f;
    }
    const int c_end = min(len, (c + 1) * kPagedAttentionChunk);
    for (int start = c * kPagedAttentionChunk; start < c_end; start += kKeys) {
      const int n = min(kKeys, c_end - start);
      // Phase 0: the tile's rows through the block table, then the rows loaded whole and
      // coalesced (consecutive threads, consecutive 16-byte vectors of a row) into shared memory.
      if (threadIdx.x < n) {
        const int pos = start + threadIdx.x;
        row[threadIdx.x] = ((int64_t{table[pos / bs]} * bs + pos % bs) * hkv + h) * D;
      }
      __syncthreads();  // row is set; also orders the previous tile's (or chunk's) reads first
      for (int i = threadIdx.x; i < n * kVecsPerRow; i += kThreads) {
        const int key = i / kVecsPerRow, v = i % kVecsPerRow;
        const int64_t off = row[key];
        reinterpret_cast<uint4*>(kt + key * kRow)[v] = reinterpret_cast<const uint4*>(kc + off)[v];
        reinterpret_cast<uint4*>(vt + key * kRow)[v] = reinterpret_cast<const uint4*>(vc + off)[v];
      }
      __syncthreads();
      // Phase 1: a key per thread (two threads, half a row each, for head_dim 128), converted
      // once, scored against every query head.
      {
        const int key = threadIdx.x / kThreadsPerKey, part = threadIdx.x % kThreadsPerKey;
        constexpr int kPartVecs = kVecsPerRow / kThreadsPerKey;
        float dot[kMaxGroup];
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) dot[g] = 0.f;
        if (key < n) {
          const uint4* kp = reinterpret_cast<const uint4*>(kt + key * kRow) + part * kPartVecs;
#pragma unroll
          for (int v = 0; v < kPartVecs; ++v) {
            const uint4 raw = kp[v];
            const T* e = reinterpret_cast<const T*>(&raw);
            float kf[kVec];
#pragma unroll
            for (int i = 0; i < kVec; ++i) kf[i] = ToFloat(e[i]);
#pragma unroll
            for (int g = 0; g < kMaxGroup; ++g) {
              if (g < group) {
                const float4* q4 = reinterpret_cast<const float4*>(qs + g * D + (part * kPartVecs + v) * kVec);
#pragma unroll
                for (int i = 0; i < kVec / 4; ++i) {
                  const float4 qq = q4[i];
                  dot[g] += qq.x * kf[4 * i] + qq.y * kf[4 * i + 1] + qq.z * kf[4 * i + 2] + qq.w * kf[4 * i + 3];
                }
              }
            }
          }
        }
        if constexpr (kThreadsPerKey == 2) {  // the two halves of a row sit in adjacent lanes
#pragma unroll
          for (int g = 0; g < kMaxGroup; ++g) dot[g] += __shfl_xor_sync(0xffffffffu, dot[g], 1);
        }
        if (key < n && part == 0) {
#pragma unroll
          for (int g = 0; g < kMaxGroup; ++g) {
            if (g < group) s[g * kKeys + key] = dot[g];
          }
        }
      }
      __syncthreads();
      // Phase 2: one warp per query head: the tile's max, probabilities, rescale factor.
      for (int g = warp; g < group; g += kWarps) {
        float* sg = s + g * kKeys;
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
          const float al = __expf(m_old - m_new);  // 0 on the chunk's first tile (m_old = -inf)
          alpha[g] = al;
          l_run[g] = l_run[g] * al + sum;
          m_run[g] = m_new;
        }
      }
      __syncthreads();
      // Phase 3: p * v, each warp over its groups of 4 keys. Keys past n are zeroed on both
      // sides (stale shared memory may hold anything, NaN included).
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < group) {
          const float al = alpha[g];
#pragma unroll
          for (int i = 0; i < kPairsPerLane; ++i) {
            acc[g][i][0] *= al;
            acc[g][i][1] *= al;
          }
        }
      }
      for (int j0 = 4 * warp; j0 < n; j0 += 4 * kWarps) {
        float2 vv[4][kPairsPerLane];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
#pragma unroll
          for (int i = 0; i < kPairsPerLane; ++i) {
            const int d = 2 * (lane + 32 * i);
            vv[u][i] = (d < D && j0 + u < n) ? LoadPair(vt + (j0 + u) * kRow + d) : make_float2(0.f, 0.f);
          }
        }
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < group) {
            float4 p4 = *reinterpret_cast<const float4*>(s + g * kKeys + j0);
            if (j0 + 1 >= n) p4.y = 0.f;
            if (j0 + 2 >= n) p4.z = 0.f;
            if (j0 + 3 >= n) p4.w = 0.f;
            const float pu[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
            for (int u = 0; u < 4; ++u) {
#pragma unroll
              for (int i = 0; i < kPairsPerLane; ++i) {
                acc[g][i][0] += pu[u] * vv[u][i].x;
                acc[g][i][1] += pu[u] * vv[u][i].y;
              }
            }
          }
        }
      }
      __syncthreads();  // s, row, kt and vt are rewritten by the next tile (or vt reused below)
    }
    // The chunk's output: the warps' partials summed in warp order.
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < group) {
#pragma unroll
        for (int i = 0; i < kPairsPerLane; ++i) {
          const int d = 2 * (lane + 32 * i);
          if (d < D) {
            red[(warp * kMaxGroup + g) * D + d] = acc[g][i][0];
            red[(warp * kMaxGroup + g) * D + d + 1] = acc[g][i][1];
          }
        }
      }
    }
    __syncthreads();
    float chunk_out[kElems];
#pragma unroll
    for (int k = 0; k < kElems; ++k) {
      const int idx = threadIdx.x + k * kThreads;  // (g, d) = (idx / D, idx % D)
      chunk_out[k] = 0.f;
      if (idx < group * D) {
        float sum = red[idx];
#pragma unroll
        for (int w = 1; w < kWarps; ++w) sum += red[w * kMaxGroup * D + idx];
        chunk_out[k] = sum;
      }
    }
    if constexpr (kSplit) {  // the chunk's state goes to the workspace: D values, max, sum
#pragma unroll
      for (int k = 0; k < kElems; ++k) {
        const int idx = threadIdx.x + k * kThreads;
        if (idx < group * D) ChunkState(a, t, h * group + idx / D, c, D)[idx % D] = chunk_out[k];
      }
      if (threadIdx.x < group) {
        float* w = ChunkState(a, t, h * group + threadIdx.x, c, D);
        w[D] = m_run[threadIdx.x];
        w[D + 1] = l_run[threadIdx.x];
      }
    } else {  // folded into the running state here
      if (threadIdx.x < group) {
        const int g = threadIdx.x;
        float m_new, fa, fb;
        FoldScales(m_tot[g], m_run[g], m_new, fa, fb);
        fold_a[g] = fa;
        fold_b[g] = fb;
        l_tot[g] = FoldValue(l_tot[g], fa, l_run[g], fb);
        m_tot[g] = m_new;
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < kElems; ++k) {
        const int idx = threadIdx.x + k * kThreads;
        if (idx < group * D) {
          const int g = idx / D;
          tot[k] = FoldValue(tot[k], fold_a[g], chunk_out[k], fold_b[g]);
        }
      }
    }
    __syncthreads();  // m_run, l_run, the fold factors and the reduce area are rewritten next
  }

  if constexpr (!kSplit) {
    T* o = static_cast<T*>(a.out) + q_off;
#pragma unroll
    for (int k = 0; k < kElems; ++k) {
      const int idx = threadIdx.x + k * kThreads;
      if (idx < group * D) {
        const int g = idx / D;
        const float inv = l_tot[g] > 0.f ? 1.f / l_tot[g] : 0.f;
        o[idx] = FromFloat<T>(__fmul_rn(tot[k], inv));
      }
    }
  }
}

// Split-KV second pass: one block per token folds each query head's chunk states in chunk
// order and writes the output (zeros for a row with no keys).
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) MergeChunksKernel(const PagedAttentionArgs a) {
  const int t = blockIdx.x, hq = static_cast<int>(a.q_heads);
  const int len = a.kv_len[t];
  const int chunks = min((len + kPagedAttentionChunk - 1) / kPagedAttentionChunk, static_cast<int>(a.max_chunks));
  T* o = static_cast<T*>(a.out) + int64_t{t} * hq * D;
  for (int i = threadIdx.x; i < hq * D / 2; i += kThreads) {
    const int head = i / (D / 2), d = (i % (D / 2)) * 2;
    float m = -INFINITY, l = 0.f, o0 = 0.f, o1 = 0.f;
    for (int c = 0; c < chunks; ++c) {
      const float* w = ChunkState(a, t, head, c, D);
      float m_new, fa, fb;
      FoldScales(m, w[D], m_new, fa, fb);
      l = FoldValue(l, fa, w[D + 1], fb);
      o0 = FoldValue(o0, fa, w[d], fb);
      o1 = FoldValue(o1, fa, w[d + 1], fb);
      m = m_new;
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    o[head * D + d] = FromFloat<T>(__fmul_rn(o0, inv));
    o[head * D + d + 1] = FromFloat<T>(__fmul_rn(o1, inv));
  }
}

// Dynamic shared memory past 48 KB must be allowed per kernel and device, once.
template <typename T, int D, bool kSplit>
size_t PrepareSmem() {
  constexpr size_t kBytes = Smem<T, D>::kBytes;
  static bool allowed[64] = {};
  int device = 0;
  cudaGetDevice(&device);
  if (kBytes > 48 * 1024 && device >= 0 && device < 64 && !allowed[device]) {
    if (cudaFuncSetAttribute(PagedAttentionKernel<T, D, kSplit>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kBytes)) != cudaSuccess) {
      CheckLaunch("PagedAttention (shared memory attribute)");
    }
    allowed[device] = true;
  }
  return kBytes;
}

template <typename T, int D>
void LaunchD(const PagedAttentionArgs& a, cudaStream_t stream) {
  const unsigned tokens = static_cast<unsigned>(a.num_tokens), heads = static_cast<unsigned>(a.kv_heads);
  if (a.num_splits > 1) {
    const size_t smem = PrepareSmem<T, D, true>();
    PagedAttentionKernel<T, D, true>
        <<<dim3(tokens, heads, static_cast<unsigned>(a.num_splits)), kThreads, smem, stream>>>(a);
    CheckLaunch("PagedAttention (split)");
    MergeChunksKernel<T, D><<<tokens, kThreads, 0, stream>>>(a);
    CheckLaunch("PagedAttention (merge)");
  } else {
    const size_t smem = PrepareSmem<T, D, false>();
    PagedAttentionKernel<T, D, false><<<dim3(tokens, heads, 1), kThreads, smem, stream>>>(a);
    CheckLaunch("PagedAttention");
  }
}

template <typename T>
void Launch(const PagedAttentionArgs& a, cudaStream_t stream) {
  switch (a.head_dim) {
    case 32: LaunchD<T, 32>(a, stream); break;
    case 64: LaunchD<T, 64>(a, stream); break;
    case 128: LaunchD<T, 128>(a, stream); break;
    default: throw std::runtime_error("PagedAttention: head_dim " + std::to_string(a.head_dim) +
                                      " not instantiated (32, 64, 128)");
  }
}

int MultiprocessorCount() {
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();  // clear it: no split is the safe answer
    return 0;
  }
  return count;
}

}  // namespace

int64_t PagedAttentionChunks(int64_t max_context) {
  return (max_context + kPagedAttentionChunk - 1) / kPagedAttentionChunk;
}

int PagedAttentionSplits(int64_t num_tokens, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                         int64_t max_context) {
  static const int sms = MultiprocessorCount();
  const int64_t chunks = PagedAttentionChunks(max_context);
  const int64_t blocks = num_tokens * kv_heads;
  // Split only launches that leave SMs idle (about 8 blocks of 128 threads fit one SM), and only
  // while the workspace stays small; more splits than a row has chunks would only add empty
  // blocks for the longest rows' sake.
  if (sms <= 0 || chunks < 2 || blocks <= 0 || blocks >= int64_t{sms} * 4) return 1;
  const int64_t workspace = PagedAttentionWorkspaceFloats(num_tokens, q_heads, head_dim, max_context) * 4;
  if (workspace > (int64_t{64} << 20)) return 1;
  const int64_t want = (int64_t{sms} * 8 + blocks - 1) / blocks;
  return static_cast<int>(std::min<int64_t>({want, chunks, kMaxPagedAttentionSplits}));
}

int64_t PagedAttentionWorkspaceFloats(int64_t num_tokens, int64_t q_heads, int64_t head_dim, int64_t max_context) {
  return num_tokens * q_heads * PagedAttentionChunks(max_context) * (head_dim + 2);
}

bool PagedAttentionSupports(int64_t head_dim, int64_t group) {
  return (head_dim == 32 || head_dim == 64 || head_dim == 128) && group >= 1 && group <= kMaxGroup;
}

void PagedAttention(const PagedAttentionArgs& a, void* stream) {
  if (a.kv_heads <= 0 || a.q_heads % a.kv_heads != 0 ||
      !PagedAttentionSupports(a.head_dim, a.q_heads / a.kv_heads)) {
    throw std::runtime_error("PagedAttention: unsupported heads " + std::to_string(a.q_heads) + "/" +
                             std::to_string(a.kv_heads) + " x head_dim " + std::to_string(a.head_dim));
  }
  if (a.num_splits > 1 && (a.workspace == nullptr || a.max_chunks < 1)) {
    throw std::runtime_error("PagedAttention: a split launch needs a workspace and max_chunks");
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
