// The one place that turns `weight_sync.backend` into the weights plane's transport.
//
// Two transports:
// - zmq: ZeroMQ frames on the control plane, trainer rank 0 -> the controller's WeightRelay ->
//   each engine (weight_sync/weight_relay.h). `cpu` selects it; `auto` on CPU pools and on pools
//   whose engines are not all on train ranks.
// - inprocess: every engine shares its worker process (and device) with a train rank
//   (pool.policy colocated): each rank copies the policy into its own engine, device to device
//   in the engine's dtype (weight_sync/inprocess_transport.h); nothing goes through the
//   controller. `auto` on colocated CUDA pools; `inprocess` asks for it on any colocated pool.
// `nccl` and `ipc` name transports that do not exist yet; they are refused with an error naming
// the key rather than silently falling back, and so is `inprocess` without colocated workers.
//
// Contract: a pure function; the recipe loader's cross-field check (core/recipe.cpp) refuses the
// same values with the key's file:line:col, this is the controller's defence in depth.
#pragma once

#include "core/recipe.h"
#include "core/status.h"

namespace tidal::weight_sync {

enum class TransportKind { kZmq, kInProcess };
const char* TransportName(TransportKind kind);

absl::StatusOr<TransportKind> SelectTransport(WeightSyncBackend backend, DeviceSet::Kind pool, PoolPolicy policy);

}  // namespace tidal::weight_sync
