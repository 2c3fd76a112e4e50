// The two pieces of the GPU weight path that host code and CUDA kernels share: the trailer that
// follows each bucket's data, and the per-element checksum term (see bucket_layout.h for the
// layout and why this checksum). Dependency-free so nvcc compiles it without absl or torch.
#pragma once

#include <cstdint>

namespace tidal::weight_sync {

struct BucketTrailer {
  uint64_t checksum = 0;
  int64_t version = -1;
  int32_t index = -1;
  int32_t count = 0;
  int64_t numel = 0;
};
static_assert(sizeof(BucketTrailer) == 32);

// The per-element hash both the CPU reference and the CUDA kernels use (keep them identical).
#if defined(__CUDACC__)
__host__ __device__
#endif
inline uint32_t ChecksumTerm(uint32_t position, uint16_t bits) {
  uint32_t x = (uint32_t{bits} | (uint32_t{bits} << 16)) ^ (position * 0x9E3779B1u);
  x *= 0x85EBCA6Bu;  // fmix32 of murmur3: a bijection of 32-bit words
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  x ^= x >> 16;
  return x;
}

}  // namespace tidal::weight_sync
