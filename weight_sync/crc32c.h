// CRC-32C (Castagnoli), the per-bucket checksum of weight sync.
//
// Software slicing-by-8 (about 1-2 GB/s per core): fast enough that checksumming a bucket costs
// far less than moving it over the CPU transport. Pure function; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tidal::weight_sync {

// Continues a running CRC: Crc32c(b, n2, Crc32c(a, n1)) == Crc32c(a ++ b). Start with 0.
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace tidal::weight_sync
