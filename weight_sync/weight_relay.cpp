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
  Payload out = hook_ ? hook_(bucket, receiver, frame, /*resend=*/false) : frame;
  bytes_relayed_ += static_cast<int64_t>(out.size());
  return out;
}

std::vector<WeightRelay::Frame> WeightRelay::Resend(int receiver) {
  std::vector<Frame> out = latest_;
  for (auto& [bucket, frame] : out) {
    if (hook_) frame = hook_(bucket, receiver, frame, /*resend=*/true);
    bytes_relayed_ += static_cast<int64_t>(frame.size());
  }
  return out;
}

}  // namespace tidal::weight_sync
