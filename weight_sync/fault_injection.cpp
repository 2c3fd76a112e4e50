#include "weight_sync/fault_injection.h"

#include <cstdlib>
#include <string>

#include "core/logging.h"

namespace tidal::weight_sync {

WeightRelay::StreamHook CorruptBucketHook(int64_t version) {
  return [version](const WeightBucket& b, int receiver, Payload frame) {
    if (b.version != version || b.index != 0) return frame;
    std::string bytes(frame.view());
    if (!bytes.empty()) bytes[bytes.size() / 2] ^= 0x5A;
    TIDAL_LOG(WARN) << "fault injection: corrupting version " << b.version << " bucket 0 for device "
                    << receiver;
    return Payload::FromString(std::move(bytes));
  };
}

WeightRelay::StreamHook FaultHookFromEnv() {
  const char* v = std::getenv("TIDAL_FAULT_CORRUPT_BUCKET");
  if (v == nullptr || *v == '\0') return {};
  return CorruptBucketHook(std::atoll(v));
}

}  // namespace tidal::weight_sync
