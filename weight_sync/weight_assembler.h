// Receiver side of weight sync: collects one version's buckets and hands back the tensors only
// when every bucket has arrived and passed its checksum.
//
// Contract: one owner thread. Begin(version) resets; Add() verifies each bucket as it comes
// (length, CRC-32C, manifest consistent with the first bucket) and returns the first problem,
// after which the version is poisoned: Take() fails and the caller keeps serving its old weights.
// Take() succeeds only when all `count` buckets are in; the returned tensors own their memory
// (they alias the received frames, which stay alive through the tensors' deleters).
#pragma once

#include <cstdint>
#include <vector>

#include "core/model.h"
#include "weight_sync/weight_bucket.h"

namespace tidal::weight_sync {

class WeightAssembler {
 public:
  void Begin(int64_t version);
  absl::Status Add(const WeightBucket& bucket, const Payload& bytes);
  bool Complete() const;
  // The version's tensors; FailedPrecondition when incomplete, the first error when poisoned.
  absl::StatusOr<NamedTensors> Take();

  int64_t version() const { return version_; }
  int received() const { return received_; }
  const absl::Status& error() const { return error_; }

 private:
  int64_t version_ = -1;
  int32_t count_ = -1;
  uint64_t total_bytes_ = 0;
  int received_ = 0;
  absl::Status error_;
  std::vector<bool> have_;
  std::vector<std::pair<WeightBucket, Payload>> buckets_;
};

}  // namespace tidal::weight_sync
