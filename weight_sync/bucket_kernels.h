// CUDA kernels of the GPU weight path, behind a plain-data, CUDA-header-free interface.
//
// Contract:
// - Every pointer is device memory (or memory mapped into this device: CUDA IPC); descriptor
//   arrays are device copies of the host tables built by weight_sync/bucket_ops.cpp.
// - Launches are asynchronous on `stream` (a cudaStream_t passed as void*); the return value is
//   the cudaError_t of the launch as an int (0 = cudaSuccess).
// - SegmentCopy is the one fused pass every stage uses: read a segment (fp32 or bf16), convert
//   to bf16 (round to nearest even, NaN -> 0x7FC0, as c10::BFloat16), write it to `dst` unless
//   null, add its BucketChecksum terms into *checksum unless null (64-bit atomics), and count
//   non-finite source values into *nonfinite unless null. Pack = fp32 masters -> bucket
//   (+checksum), verify = bucket -> nothing (+checksum), apply = bucket -> engine tensors.
// - A segment covers tiles [first_tile, first_tile + ceil(numel / kTileElements)); the caller
//   passes segments sorted by first_tile and the total tile count as the grid.
#pragma once

#include <cstdint>

#include "weight_sync/bucket_wire.h"

namespace tidal::weight_sync {

inline constexpr int64_t kTileElements = 16384;

struct CopySegment {
  const void* src = nullptr;
  uint16_t* dst = nullptr;
  uint64_t* checksum = nullptr;
  int64_t numel = 0;
  int64_t position = 0;  // position of the segment's first element in its bucket
  int64_t first_tile = 0;
  int32_t src_f32 = 0;   // 1: fp32 source, 0: bf16 source
  int32_t pad = 0;
};

struct TrailerInit {
  BucketTrailer* dst = nullptr;
  BucketTrailer value;  // checksum 0: the pack kernel adds into it
};

int LaunchSegmentCopy(const CopySegment* segments, int32_t count, int64_t total_tiles,
                      uint32_t* nonfinite, void* stream);
int LaunchInitTrailers(const TrailerInit* inits, int32_t count, void* stream);
// out[i] = *src[i]: brings a version's scattered trailers together for one copy to the host.
int LaunchGatherTrailers(const BucketTrailer* const* src, BucketTrailer* out, int32_t count,
                         void* stream);

}  // namespace tidal::weight_sync
