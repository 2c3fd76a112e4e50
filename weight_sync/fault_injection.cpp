#include "weight_sync/fault_injection.h"

#include <cstdlib>
#include <string>

#include "core/logging.h"

namespace tidal::weight_sync {

WeightRelay::StreamHook CorruptBucketHook(int64_t version, bool resends) {
  return [version, resends](const WeightBucket& b, int receiver, Payload frame, bool resend) {
    if (b.version != version || b.index != 0 || (resend && !resends)) return frame;
    std::string bytes(frame.view());
    if (!bytes.empty()) bytes[bytes.size() / 2] ^= 0x5A;
    TIDAL_LOG(WARN) << "fault injection: corrupting version " << b.version << " bucket 0 for device "
                    << receiver << (resend ? " (resend)" : "");
    return Payload::FromString(std::move(bytes));
  };
}

std::optional<CorruptBucketFault> CorruptBucketFaultFromEnv() {
  const char* v = std::getenv("TIDAL_FAULT_CORRUPT_BUCKET");
  if (v == nullptr || *v == '\0') return std::nullopt;
  const std::string spec(v);
  const bool always = spec.size() > 7 && spec.compare(spec.size() - 7, 7, ":always") == 0;
  return CorruptBucketFault{std::atoll(spec.c_str()), always};
}

WeightRelay::StreamHook FaultHookFromEnv() {
  auto f = CorruptBucketFaultFromEnv();
  if (!f) return {};
  return CorruptBucketHook(f->version, f->resends);
}

}  // namespace tidal::weight_sync
