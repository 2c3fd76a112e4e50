// Weight-sync wire types: one policy version travels as `count` buckets, each a WeightBucket
// message whose single raw frame holds the bucket's tensors back to back.
//
// Contract (torch-free, so the controller can relay buckets without linking tensor code):
// - A bucket's frame is exactly `nbytes` long and its CRC-32C is `crc32c`; `entries` say where
//   each tensor lies in it (HF name, torch dtype name, shape, byte offset, byte length). Entries
//   never straddle buckets: a tensor larger than the bucket size travels alone in its own bucket.
// - `index` runs 0..count-1; every bucket of a version carries the same `count` and
//   `total_bytes`, so a receiver knows when it has the whole version and can check it is whole
//   before touching its engine (weight_sync/weight_assembler.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/message.h"

namespace tidal::weight_sync {

struct WeightBucketEntry {
  std::string name;
  std::string dtype;  // "float32" | "bfloat16" | "float16" | ...
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t nbytes = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(WeightBucketEntry, name, dtype, shape, offset, nbytes)

struct WeightBucket {
  int64_t version = -1;
  int32_t index = 0;
  int32_t count = 0;
  uint64_t nbytes = 0;
  uint32_t crc32c = 0;
  uint64_t total_bytes = 0;  // sum of nbytes over the version's buckets
  std::vector<WeightBucketEntry> entries;
};
TIDAL_MESSAGE(WeightBucket, version, index, count, nbytes, crc32c, total_bytes, entries)

// Checks a bucket's frame against its header: length, CRC-32C, entries inside the frame.
// The error names the version, the bucket and what differs.
absl::Status VerifyBucket(const WeightBucket& bucket, const Payload& bytes);

}  // namespace tidal::weight_sync
