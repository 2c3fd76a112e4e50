// Test-only fault injection for the weights plane. Production code paths carry no fault branch:
// the controller installs this hook on its WeightRelay only when the environment asks for it.
//
// TIDAL_FAULT_CORRUPT_BUCKET=V: every streamed copy of bucket 0 of version V gets one byte
// flipped (the relay's cached original stays intact), so receivers must reject the version,
// keep serving the old one, and be healed by a resend (tests/tools/run_faults_test.cpp).
// TIDAL_FAULT_CORRUPT_BUCKET=V:always corrupts the resends of V too, so the version never gets
// through and the run must stop at control.budget.weight_resends.
#pragma once

#include "weight_sync/weight_relay.h"

namespace tidal::weight_sync {

// The hook that corrupts bucket 0 of `version` when streamed, and when resent if `resends`.
WeightRelay::StreamHook CorruptBucketHook(int64_t version, bool resends = false);

// CorruptBucketHook(V[, true]) when TIDAL_FAULT_CORRUPT_BUCKET=V[:always] is set; an empty hook
// otherwise.
WeightRelay::StreamHook FaultHookFromEnv();

}  // namespace tidal::weight_sync
