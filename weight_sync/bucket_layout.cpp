#include "weight_sync/bucket_layout.h"

#include <algorithm>
#include <limits>

namespace tidal::weight_sync {

int64_t BucketPlan::DataBytes(int64_t element_bytes) const {
  int64_t b = numel * element_bytes;
  return (b + kBucketAlignBytes - 1) / kBucketAlignBytes * kBucketAlignBytes;
}

std::vector<ParamSpec> BucketLayout::BucketParams(int32_t bucket) const {
  std::vector<ParamSpec> out;
  for (const auto& s : buckets.at(bucket).slots) out.push_back(params[s.param]);
  return out;
}

absl::StatusOr<BucketLayout> PlanBuckets(std::vector<ParamSpec> params, int64_t bucket_bytes,
                                         int64_t element_bytes) {
  if (bucket_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("weight sync: bucket size must be positive, got ",
                                                   bucket_bytes, " bytes"));
  }
  if (element_bytes != 2) {
    return absl::InvalidArgumentError("weight sync: GPU buckets carry 16-bit elements (bf16)");
  }
  if (params.empty()) return absl::InvalidArgumentError("weight sync: no parameters to plan");
  BucketLayout layout;
  layout.element_bytes = element_bytes;
  const int64_t bucket_elems = std::max<int64_t>(1, bucket_bytes / element_bytes);
  for (size_t p = 0; p < params.size(); ++p) {
    int64_t n = 1;
    for (int64_t d : params[p].shape) {
      if (d <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("weight sync: parameter '", params[p].name,
                                                       "' has a non-positive dimension"));
      }
      n *= d;
    }
    layout.param_numel.push_back(n);
    if (layout.buckets.empty() ||
        (layout.buckets.back().numel > 0 && layout.buckets.back().numel + n > bucket_elems)) {
      layout.buckets.emplace_back();
      layout.buckets.back().index = static_cast<int32_t>(layout.buckets.size() - 1);
    }
    BucketPlan& b = layout.buckets.back();
    b.slots.push_back({static_cast<int32_t>(p), b.numel, n});
    b.numel += n;
    if (b.numel > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weight sync: parameter '", params[p].name, "' makes a bucket of ", b.numel,
          " elements; checksum positions are 32-bit (at most 2^31 elements per bucket)"));
    }
    layout.total_elements += n;
  }
  int64_t off = 0;
  for (auto& b : layout.buckets) {
    b.byte_offset = off;
    // Each bucket of a staging buffer starts 256-byte aligned (vector loads, trailer alignment).
    off += (b.WireBytes(element_bytes) + kBucketAlignBytes - 1) / kBucketAlignBytes * kBucketAlignBytes;
    layout.max_wire_bytes = std::max(layout.max_wire_bytes, b.WireBytes(element_bytes));
  }
  layout.staging_bytes = off;
  layout.params = std::move(params);
  return layout;
}

uint64_t BucketChecksum(const uint16_t* elements, int64_t n, int64_t first) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += ChecksumTerm(static_cast<uint32_t>(first + i), elements[i]);
  return sum;
}

absl::Status CheckTrailer(const BucketTrailer& got, uint64_t computed_checksum, int64_t version,
                          const BucketPlan& plan, int32_t count) {
  auto where = absl::StrFormat("weight version %d bucket %d/%d", version, plan.index, count);
  if (got.version != version || got.index != plan.index || got.count != count ||
      got.numel != plan.numel) {
    return absl::DataLossError(absl::StrFormat(
        "%s: trailer says version %d bucket %d/%d of %d elements, expected %d elements", where,
        got.version, got.index, got.count, got.numel, plan.numel));
  }
  if (got.checksum != computed_checksum) {
    return absl::DataLossError(absl::StrFormat("%s: checksum mismatch (sent %016x, received data %016x)",
                                               where, got.checksum, computed_checksum));
  }
  return absl::OkStatus();
}

}  // namespace tidal::weight_sync
