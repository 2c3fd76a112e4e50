// KV append by slot mapping (see kernels.h).
#include "core/cuda/dtype_util.cuh"
#include "rollout/cuda/kernels.h"

namespace tidal::rollout::cuda {
using namespace ::tidal::cuda;  // ToFloat, FromFloat, CheckLaunch (core/cuda/dtype_util.cuh)
namespace {

// One thread moves 16 bytes of k and of v; a token's row (Hkv * D elements) is a whole number
// of 16-byte chunks for every head_dim tidal instantiates.
__global__ void KvAppendKernel(const uint4* k, const uint4* v, uint4* kc, uint4* vc,
                               const int64_t* slots, int64_t num_tokens, int64_t chunks_per_row) {
  const int64_t n = num_tokens * chunks_per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / chunks_per_row, c = i % chunks_per_row;
    const int64_t slot = slots[t];
    if (slot < 0) continue;
    kc[slot * chunks_per_row + c] = k[i];
    vc[slot * chunks_per_row + c] = v[i];
  }
}

}  // namespace

void KvAppend(Dtype dtype, const void* k, const void* v, void* k_cache, void* v_cache,
              const int64_t* slot_mapping, int64_t num_tokens, int64_t kv_heads,
              int64_t head_dim, void* stream) {
  const int64_t elem = dtype == Dtype::kF32 ? 4 : 2;
  const int64_t row_bytes = kv_heads * head_dim * elem;
  if (row_bytes % 16 != 0) throw std::runtime_error("KvAppend: a token's K row must be a multiple of 16 bytes");
  if (num_tokens == 0) return;
  const int64_t chunks = row_bytes / 16;
  const int64_t n = num_tokens * chunks;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 4096);
  KvAppendKernel<<<static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const uint4*>(k), static_cast<const uint4*>(v), static_cast<uint4*>(k_cache),
      static_cast<uint4*>(v_cache), slot_mapping, num_tokens, chunks);
  CheckLaunch("KvAppend");
}

}  // namespace tidal::rollout::cuda
