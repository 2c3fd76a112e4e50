#include "weight_sync/weight_relay.h"

namespace tidal::weight_sync {

bool WeightRelay::Accept(const WeightBucket& bucket, Payload frame) {
  if (bucket.version != incoming_version_) {
    incoming_.clear();
    incoming_version_ = bucket.version;
  }
  incoming_.emplace_back(bucket, std::move(frame));
  if (static_cast<int>(incoming_.size()) != bucket.count) return false;
  latest_ = std::move(incoming_);
  incoming_.clear();
  incoming_version_ = -1;
  ++versions_;
  return true;
}

Payload WeightRelay::Stream(const WeightBucket& bucket, const Payload& frame, int receiver) {
  Payload out = hook_ ? hook_(bucket, receiver, frame) : frame;
  bytes_relayed_ += static_cast<int64_t>(out.size());
  return out;
}

std::vector<WeightRelay::Frame> WeightRelay::Resend() {
  for (const auto& f : latest_) bytes_relayed_ += static_cast<int64_t>(f.second.size());
  return latest_;
}

}  // namespace tidal::weight_sync
