// Hashes and checksums: the one home in tidal for CRC-32C (checkpoint files, weight-sync
// buckets) and SplitMix64 (seed derivation).
//
// Contract: pure functions, thread-safe, no allocation after the first call (the CRC tables are
// built once, thread-safely, on first use).
#pragma once

#include <cstddef>
#include <cstdint>

// SplitMix64 is also called from CUDA kernels (rollout/cuda/sampling.cu).
#if defined(__CUDACC__)
#define TIDAL_HOST_DEVICE __host__ __device__
#else
#define TIDAL_HOST_DEVICE
#endif

namespace tidal {

// CRC-32C (Castagnoli). Continues a running CRC: Crc32c(b, n2, Crc32c(a, n1)) == Crc32c(a ++ b);
// start with 0. Uses the SSE4.2 crc32 instruction when the CPU has it, slicing-by-8 tables
// otherwise; both give the same value.
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);
// The table path alone (what non-x86 hosts run), exposed so tests can compare both paths.
uint32_t Crc32cPortable(const void* data, size_t size, uint32_t crc = 0);

// SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijective 64-bit mix, used to derive
// independent seed streams from one run seed, prefix-cache block hashes and per-token sampling
// noise (host and device).
TIDAL_HOST_DEVICE constexpr uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace tidal
