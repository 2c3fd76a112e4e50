// Sender side of weight sync: cuts a policy version (HF-named tensors) into checksummed buckets.
//
// Contract: PackWeights copies each tensor's bytes once into its bucket's buffer (the frame that
// leaves the process), so the caller may update its weights as soon as it returns. Tensors are
// packed in the map's (name) order, each contiguous CPU copy; a bucket closes when adding the next
// tensor would pass `bucket_bytes`, and a tensor larger than `bucket_bytes` gets a bucket alone.
// Any thread; no shared state.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model.h"
#include "weight_sync/weight_bucket.h"

namespace tidal::weight_sync {

struct PackedBucket {
  WeightBucket header;
  Payload bytes;
};

std::vector<PackedBucket> PackWeights(const NamedTensors& weights, int64_t version,
                                      int64_t bucket_bytes);

// Torch dtype names used on the wire ("float32", "bfloat16", ...), both directions.
std::string DtypeName(at::ScalarType type);
absl::StatusOr<at::ScalarType> DtypeFromName(const std::string& name);

}  // namespace tidal::weight_sync
