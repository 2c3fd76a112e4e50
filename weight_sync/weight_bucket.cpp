#include "weight_sync/weight_bucket.h"

#include "core/status.h"
#include "core/hash.h"

namespace tidal::weight_sync {

absl::Status VerifyBucket(const WeightBucket& bucket, const Payload& bytes) {
  auto where = absl::StrFormat("weight version %d bucket %d/%d", bucket.version, bucket.index,
                               bucket.count);
  if (bucket.index < 0 || bucket.index >= bucket.count) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": index out of range"));
  }
  if (bytes.size() != bucket.nbytes) {
    return absl::DataLossError(absl::StrFormat("%s: expected %d bytes, received %d", where,
                                               bucket.nbytes, bytes.size()));
  }
  uint32_t crc = Crc32c(bytes.data(), bytes.size());
  if (crc != bucket.crc32c) {
    return absl::DataLossError(absl::StrFormat("%s: checksum mismatch (expected crc32c %08x, computed %08x)",
                                               where, bucket.crc32c, crc));
  }
  for (const auto& e : bucket.entries) {
    if (e.offset > bucket.nbytes || e.nbytes > bucket.nbytes - e.offset) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: tensor '%s' [%d, +%d) lies outside the %d-byte bucket", where, e.name, e.offset,
          e.nbytes, bucket.nbytes));
    }
  }
  return absl::OkStatus();
}

}  // namespace tidal::weight_sync
