// The weight relay: the controller-side cache of the weights plane. Train rank 0 publishes a
// version bucket by bucket; the relay streams each bucket on as it arrives and keeps the newest
// complete version so that a restarted or late receiver (or one that rejected a version) can be
// served whole without asking the trainer again.
//
// Contract:
// - Single-threaded: owned by the controller's event-loop thread. Holds Payloads (shared,
//   immutable frames), never copies tensor bytes.
// - Accept() buckets of one version in index order; a bucket of a new version discards the
//   partial one. Latest() only ever holds a complete version.
// - Counts the bytes it hands out (Stream/Resend) and the versions it completed.
// - The stream hook is a test seam (weight_sync/fault_injection.h): it may rewrite the frame
//   streamed to one receiver; the cached copy is never touched.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "core/message.h"
#include "weight_sync/weight_bucket.h"

namespace tidal::weight_sync {

class WeightRelay {
 public:
  using Frame = std::pair<WeightBucket, Payload>;
  // Test-only (fault_injection.h): may replace the frame sent to `receiver`; `resend` tells a
  // Resend from the first streaming of the bucket.
  using StreamHook = std::function<Payload(const WeightBucket&, int receiver, Payload, bool resend)>;

  // Caches `bucket`; returns true when it completes its version (now Latest()).
  bool Accept(const WeightBucket& bucket, Payload frame);
  // The frame to stream to `receiver` for a bucket just accepted.
  Payload Stream(const WeightBucket& bucket, const Payload& frame, int receiver);
  // The newest complete version, bucket by bucket, to send to `receiver`.
  std::vector<Frame> Resend(int receiver);

  const std::vector<Frame>& Latest() const { return latest_; }
  int64_t latest_version() const { return latest_.empty() ? -1 : latest_.front().first.version; }
  int64_t versions() const { return versions_; }
  int64_t bytes_relayed() const { return bytes_relayed_; }

  void SetStreamHook(StreamHook hook) { hook_ = std::move(hook); }

 private:
  std::vector<Frame> latest_, incoming_;
  int64_t incoming_version_ = -1;
  int64_t versions_ = 0, bytes_relayed_ = 0;
  StreamHook hook_;
};

}  // namespace tidal::weight_sync
