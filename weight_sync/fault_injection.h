// Test-only fault injection for the weights plane. Production code paths carry no fault branch:
// the controller installs this hook on its WeightRelay only when the environment asks for it.
//
// TIDAL_FAULT_CORRUPT_BUCKET=V: every streamed copy of bucket 0 of version V gets one byte
// flipped (the relay's cached original stays intact), so receivers must reject the version,
// keep serving the old one, and be healed by a resend (tests/tools/run_faults_test.cpp).
// TIDAL_FAULT_CORRUPT_BUCKET=V:always corrupts the resends of V too, so the version never gets
// through and the run must stop at control.budget.weight_resends.
// The broadcast transport (weight_sync/broadcast_publisher.h) reads the same variable on the
// publisher: the first broadcast of version V (every one with :always) goes out with one byte of
// bucket 0 flipped after its checksum was written, so every receiver refuses it.
#pragma once

#include <optional>

#include "weight_sync/weight_relay.h"

namespace tidal::weight_sync {

// TIDAL_FAULT_CORRUPT_BUCKET parsed: the version to corrupt, and whether its resends too.
struct CorruptBucketFault {
  int64_t version = 0;
  bool resends = false;
};
std::optional<CorruptBucketFault> CorruptBucketFaultFromEnv();

// The hook that corrupts bucket 0 of `version` when streamed, and when resent if `resends`.
WeightRelay::StreamHook CorruptBucketHook(int64_t version, bool resends = false);

// CorruptBucketHook(V[, true]) when TIDAL_FAULT_CORRUPT_BUCKET=V[:always] is set; an empty hook
// otherwise.
WeightRelay::StreamHook FaultHookFromEnv();

}  // namespace tidal::weight_sync
