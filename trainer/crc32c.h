// CRC-32C (Castagnoli), the checksum of checkpoint files. Uses the SSE4.2 crc32 instruction when
// the CPU has it, a table otherwise; both give the same value. Thread-safe, no state.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tidal {

// Extends `crc` (0 to start) over data[0, n).
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);

}  // namespace tidal
