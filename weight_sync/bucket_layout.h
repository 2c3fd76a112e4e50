// Layout of one policy version on the GPU weight path (NCCL broadcast, CUDA IPC, in-process):
// the engine's parameters in ParamSpecs order, in the engine's dtype (bf16), cut into buckets
// that travel one at a time.
//
// Contract (torch-free, plain data, so it can be planned anywhere and shared with kernels):
// - Every side of a transfer plans the same layout from the same ParamSpecs and bucket size
//   (PlanBuckets is deterministic), so only the version and the bytes travel.
// - A bucket holds whole tensors back to back (element offsets, no padding between them); a
//   bucket closes when the next tensor would pass `bucket_bytes`; a tensor larger than that
//   travels alone. This keeps each bucket a valid Engine::UpdateWeightsFlat payload.
// - On the wire and in staging memory a bucket is its data, padded to 256 bytes, followed by a
//   BucketTrailer (checksum, version, index, count, element count) written by the sender's pack
//   kernel and checked by the receiver before anything reaches the engine.
// - The checksum (BucketChecksum) is a sum mod 2^64 of a bijective hash of (element position,
//   element bits): computable in one parallel pass at memory bandwidth (CRC-32C is sequential),
//   and a change of any single element always changes it (the hash is a bijection of the bits
//   for a fixed position, so the sum moves by a non-zero amount smaller than 2^64). Several
//   changed elements escape it with probability about 2^-32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/status.h"
#include "weight_sync/bucket_wire.h"

namespace tidal::weight_sync {

struct BucketSlot {
  int32_t param = 0;   // index into BucketLayout::params
  int64_t offset = 0;  // element offset inside the bucket's data
  int64_t numel = 0;
};

struct BucketPlan {
  int32_t index = 0;
  int64_t numel = 0;        // data elements
  int64_t byte_offset = 0;  // where the bucket starts in a whole-version staging buffer
  std::vector<BucketSlot> slots;

  int64_t DataBytes(int64_t element_bytes) const;
  int64_t TrailerOffset(int64_t element_bytes) const { return DataBytes(element_bytes); }
  // Data (padded) + trailer: the bytes one transfer of this bucket moves.
  int64_t WireBytes(int64_t element_bytes) const {
    return DataBytes(element_bytes) + static_cast<int64_t>(sizeof(BucketTrailer));
  }
};

struct BucketLayout {
  std::vector<ParamSpec> params;
  std::vector<int64_t> param_numel;
  std::vector<BucketPlan> buckets;
  int64_t element_bytes = 2;  // bf16
  int64_t total_elements = 0;
  int64_t staging_bytes = 0;  // sum of WireBytes: a whole version in one buffer
  int64_t max_wire_bytes = 0;  // the largest bucket: the size of a ring slot

  int32_t count() const { return static_cast<int32_t>(buckets.size()); }
  // The ParamSpecs of one bucket's slots, in order (an UpdateWeightsFlat layout).
  std::vector<ParamSpec> BucketParams(int32_t bucket) const;
};

inline constexpr int64_t kBucketAlignBytes = 256;

// InvalidArgument for bucket_bytes <= 0, empty or non-positive shapes, or a bucket too large for
// the checksum's 32-bit positions.
absl::StatusOr<BucketLayout> PlanBuckets(std::vector<ParamSpec> params, int64_t bucket_bytes,
                                         int64_t element_bytes = 2);

// The checksum of `n` 16-bit elements whose first one sits at position `first` in its bucket.
// Partial sums over disjoint ranges of one bucket add up (mod 2^64) to the bucket's checksum.
uint64_t BucketChecksum(const uint16_t* elements, int64_t n, int64_t first = 0);

// Checks a received trailer against what the receiver expects (version, index, count, numel)
// and the checksum it computed. DataLoss names the bucket and what differs.
absl::Status CheckTrailer(const BucketTrailer& got, uint64_t computed_checksum, int64_t version,
                          const BucketPlan& plan, int32_t count);

}  // namespace tidal::weight_sync
