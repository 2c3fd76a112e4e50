// GPU sampling (see kernels.h and rollout/sampler.h): one 1024-thread block per row, a few
// passes over the row's logits (fp32, or bf16/fp16 widened to fp32 as they are read), no sort.
//   pass 1: max and argmax (lowest id on ties): the greedy token and the softmax shift m;
//   pass 2: Z = sum exp((l - m) / T): the full-vocabulary normaliser of the returned logprob;
//   filters: top_k and top_p become a threshold on the logit, found by bisection over the
//     order-preserving 32-bit key of the float (32 counting / summing passes each, only for
//     rows that set them); min_p is the test (l - m) / T >= log(min_p);
//   draw: argmax over the kept tokens of (l - m) / T + Gumbel noise, the noise a hash of
//     (seed, token index, vocabulary id), bounded (|g| < 17): an exact draw from the kept, renormalised
//     distribution that depends only on the request's seed and position, never on the batch.
#include <climits>
#include <cmath>

#include "core/hash.h"
#include "core/cuda/dtype_util.cuh"
#include "rollout/cuda/kernels.h"

namespace tidal::rollout::cuda {
using namespace ::tidal::cuda;  // ToFloat, FromFloat, CheckLaunch (core/cuda/dtype_util.cuh)
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// Uniform in (0, 1), 23 bits, for vocabulary id i of the row whose stream is `base`. 23 bits
// keep (k + 0.5) * 2^-23 exactly representable below 1: with 24 bits the top value rounds to
// 1.0f, whose Gumbel noise -log(-log(1)) is +inf and would win the draw for any token.
__device__ __forceinline__ float Uniform(uint64_t base, int64_t i) {
  const uint64_t b = SplitMix64(base ^ SplitMix64(static_cast<uint64_t>(i) * 0xd1b54a32d192ed03ULL));
  return (static_cast<float>(b >> 41) + 0.5f) * (1.0f / 8388608.0f);
}

// Order-preserving map of a float onto uint32 (larger float -> larger key).
__device__ __forceinline__ uint32_t Key(float x) {
  const uint32_t k = __float_as_uint(x);
  return (k & 0x80000000u) ? ~k : (k | 0x80000000u);
}

struct Best {
  float v;
  int i;
};
__device__ __forceinline__ Best Better(Best a, Best b) {
  return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

__device__ float BlockSum(float x, float* buf) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  if (lane == 0) buf[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < kWarps ? buf[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    if (lane == 0) buf[32] = x;
  }
  __syncthreads();
  const float r = buf[32];
  __syncthreads();
  return r;
}

__device__ Best BlockBest(Best b, float* fbuf, int* ibuf) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    b = Better(b, Best{__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.i, o)});
  }
  if (lane == 0) {
    fbuf[warp] = b.v;
    ibuf[warp] = b.i;
  }
  __syncthreads();
  if (warp == 0) {
    b = lane < kWarps ? Best{fbuf[lane], ibuf[lane]} : Best{-INFINITY, INT_MAX};
    for (int o = 16; o > 0; o >>= 1) {
      b = Better(b, Best{__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.i, o)});
    }
    if (lane == 0) {
      fbuf[32] = b.v;
      ibuf[32] = b.i;
    }
  }
  __syncthreads();
  const Best r{fbuf[32], ibuf[32]};
  __syncthreads();
  return r;
}

// Logits are read in their own dtype and widened to fp32 in registers (exact), so a bf16 model's
// logits need no fp32 copy of the batch x vocabulary matrix first.
template <typename L>
struct Row {
  const L* p;
  __device__ __forceinline__ float operator[](int i) const { return ToFloat(p[i]); }
};

template <typename L>
__global__ void __launch_bounds__(kThreads) SampleKernel(const L* logits, int64_t vocab,
                                                         const SampleRowParams* params,
                                                         int32_t* tokens, float* logprobs) {
  __shared__ float fbuf[33];
  __shared__ int ibuf[33];
  const int64_t r = blockIdx.x;
  const Row<L> l{logits + r * vocab};
  const SampleRowParams p = params[r];
  const int n = static_cast<int>(vocab);

  Best best{-INFINITY, INT_MAX};
  for (int i = threadIdx.x; i < n; i += kThreads) best = Better(best, Best{l[i], i});
  best = BlockBest(best, fbuf, ibuf);
  const float m = best.v, it = p.inv_temperature;
  float z = 0.f;
  for (int i = threadIdx.x; i < n; i += kThreads) z += expf((l[i] - m) * it);
  const float log_z = logf(BlockSum(z, fbuf));

  int token = best.i;
  if (!p.greedy) {
    uint32_t lo_key = 0;  // keep tokens whose key >= lo_key
    if (p.top_k > 0 && p.top_k < n) {
      // Largest key t with count(key >= t) >= top_k: the top_k-th largest logit.
      uint64_t lo = 0, hi = uint64_t{1} << 32;
      while (hi - lo > 1) {
        const uint64_t mid = (lo + hi) / 2;
        float c = 0.f;
        for (int i = threadIdx.x; i < n; i += kThreads) c += Key(l[i]) >= mid ? 1.f : 0.f;
        if (BlockSum(c, fbuf) >= static_cast<float>(p.top_k)) lo = mid; else hi = mid;
      }
      lo_key = static_cast<uint32_t>(lo);
    }
    if (p.top_p < 1.f) {
      // Largest key t whose mass (key >= t) reaches top_p of the mass kept so far.
      float zk = 0.f;
      for (int i = threadIdx.x; i < n; i += kThreads) {
        if (Key(l[i]) >= lo_key) zk += expf((l[i] - m) * it);
      }
      const float target = p.top_p * BlockSum(zk, fbuf);
      uint64_t lo = lo_key, hi = uint64_t{1} << 32;
      while (hi - lo > 1) {
        const uint64_t mid = (lo + hi) / 2;
        float mass = 0.f;
        for (int i = threadIdx.x; i < n; i += kThreads) {
          if (Key(l[i]) >= mid) mass += expf((l[i] - m) * it);
        }
        if (BlockSum(mass, fbuf) >= target) lo = mid; else hi = mid;
      }
      lo_key = static_cast<uint32_t>(lo);
    }
    const float log_min_p = p.min_p > 0.f ? logf(p.min_p) : -INFINITY;
    const uint64_t base = SplitMix64(SplitMix64(p.seed) ^ SplitMix64(static_cast<uint64_t>(p.token_index) + 0x5851f42d4c957f2dULL));
    Best pick{-INFINITY, INT_MAX};
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const float x = l[i], s = (x - m) * it;
      if (Key(x) >= lo_key && s >= log_min_p) {
        pick = Better(pick, Best{s - logf(-logf(Uniform(base, i))), i});
      }
    }
    pick = BlockBest(pick, fbuf, ibuf);
    if (pick.i != INT_MAX) token = pick.i;  // the argmax always qualifies; guard NaN rows
  }
  if (threadIdx.x == 0) {
    tokens[r] = token;
    logprobs[r] = (l[token] - m) * it - log_z;
  }
}

}  // namespace

void SampleRows(Dtype dtype, const void* logits, int64_t rows, int64_t vocab, const SampleRowParams* params,
                int32_t* tokens, float* logprobs, void* stream) {
  if (rows == 0) return;
  if (vocab <= 0 || vocab >= INT_MAX) throw std::runtime_error("SampleRows: bad vocabulary size");
  const auto s = static_cast<cudaStream_t>(stream);
  const auto grid = static_cast<unsigned>(rows);
  switch (dtype) {
    case Dtype::kF32:
      SampleKernel<float><<<grid, kThreads, 0, s>>>(static_cast<const float*>(logits), vocab, params, tokens, logprobs);
      break;
    case Dtype::kF16:
      SampleKernel<__half><<<grid, kThreads, 0, s>>>(static_cast<const __half*>(logits), vocab, params, tokens, logprobs);
      break;
    case Dtype::kBF16:
      SampleKernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(logits), vocab, params,
                                                            tokens, logprobs);
      break;
  }
  CheckLaunch("SampleRows");
}

}  // namespace tidal::rollout::cuda
