#include "weight_sync/weight_assembler.h"

#include "weight_sync/weight_packer.h"

namespace tidal::weight_sync {

void WeightAssembler::Begin(int64_t version) {
  version_ = version;
  count_ = -1;
  total_bytes_ = 0;
  received_ = 0;
  error_ = absl::OkStatus();
  have_.clear();
  buckets_.clear();
}

absl::Status WeightAssembler::Add(const WeightBucket& bucket, const Payload& bytes) {
  if (!error_.ok()) return error_;
  absl::Status s;
  if (bucket.version != version_) {
    s = absl::FailedPreconditionError(absl::StrFormat(
        "weight sync: bucket of version %d while assembling version %d", bucket.version, version_));
  } else if (count_ >= 0 && (bucket.count != count_ || bucket.total_bytes != total_bytes_)) {
    s = absl::InvalidArgumentError(absl::StrFormat(
        "weight version %d bucket %d: manifest says %d buckets / %d bytes, earlier buckets %d / %d",
        version_, bucket.index, bucket.count, bucket.total_bytes, count_, total_bytes_));
  } else {
    s = VerifyBucket(bucket, bytes);
  }
  if (s.ok() && count_ < 0) {
    count_ = bucket.count;
    total_bytes_ = bucket.total_bytes;
    have_.assign(count_, false);
  }
  if (s.ok() && have_[bucket.index]) {
    s = absl::InvalidArgumentError(absl::StrFormat("weight version %d: bucket %d received twice",
                                                   version_, bucket.index));
  }
  if (!s.ok()) {
    error_ = s;
    buckets_.clear();
    return s;
  }
  have_[bucket.index] = true;
  ++received_;
  buckets_.emplace_back(bucket, bytes);
  return absl::OkStatus();
}

bool WeightAssembler::Complete() const { return error_.ok() && count_ >= 0 && received_ == count_; }

absl::StatusOr<NamedTensors> WeightAssembler::Take() {
  if (!error_.ok()) return error_;
  if (!Complete()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight version %d: %d of %d buckets received", version_, received_, count_));
  }
  NamedTensors out;
  for (auto& [bucket, bytes] : buckets_) {
    for (const auto& e : bucket.entries) {
      TIDAL_ASSIGN_OR_RETURN(at::ScalarType dtype, DtypeFromName(e.dtype));
      int64_t expect = at::elementSize(dtype);
      for (int64_t d : e.shape) expect *= d;
      if (static_cast<uint64_t>(expect) != e.nbytes) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "weight version %d: tensor '%s' has %d bytes, shape and dtype say %d", version_,
            e.name, e.nbytes, expect));
      }
      // Keep the received frame alive for as long as the tensor lives: no copy.
      auto owner = bytes.owner();
      void* ptr = const_cast<std::byte*>(bytes.data() + e.offset);
      at::Tensor t = at::from_blob(ptr, e.shape, [owner](void*) {}, at::TensorOptions().dtype(dtype));
      // A misaligned view (mixed dtypes in one bucket) gets its own aligned copy.
      if (reinterpret_cast<uintptr_t>(ptr) % at::elementSize(dtype) != 0) t = t.clone();
      out[e.name] = t;
    }
  }
  buckets_.clear();
  count_ = -1;
  received_ = 0;
  return out;
}

}  // namespace tidal::weight_sync
