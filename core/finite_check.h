// CheckAllFinite: the guard that keeps a NaN or an infinity in a policy from leaving the
// trainer. Publishing (Trainer::FullWeights) and exporting (WriteHfCheckpoint) call it.
//
// Contract: reads the tensors (any device; a device tensor costs one reduction and a sync);
// thread-compatible.
#pragma once

#include <string>

#include "core/model.h"  // NamedTensors
#include "core/status.h"

namespace tidal {

// kDataLoss naming the first floating-point tensor that holds a NaN or an infinity, and how many
// such values; `what` says whose weights ("the policy at step 12").
absl::Status CheckAllFinite(const NamedTensors& weights, const std::string& what);

}  // namespace tidal
