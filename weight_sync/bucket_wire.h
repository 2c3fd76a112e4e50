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

// The per-element hash both the CPU reference and the CUDA kernels use (keep them identical):
// x = (bits | bits << 16) ^ key, then one odd multiply and one xor-shift, each a bijection of
// 32-bit words, so the term is a bijection of `bits` for a fixed position. key = position *
// kChecksumStep, which lets the kernel step keys by addition.
inline constexpr uint32_t kChecksumStep = 0x9E3779B1u;

#if defined(__CUDACC__)
__host__ __device__
#endif
inline uint32_t ChecksumTermKeyed(uint32_t key, uint16_t bits) {
  uint32_t x = (uint32_t{bits} | (uint32_t{bits} << 16)) ^ key;
  x *= 0x85EBCA6Bu;
  return x ^ (x >> 15);
}

#if defined(__CUDACC__)
__host__ __device__
#endif
inline uint32_t ChecksumTerm(uint32_t position, uint16_t bits) {
  return ChecksumTermKeyed(position * kChecksumStep, bits);
}

}  // namespace tidal::weight_sync
