// The one place that turns `weight_sync.backend` into the weights plane's transport.
//
// Today there is one transport: ZeroMQ frames on the control plane, trainer rank 0 -> the
// controller's WeightRelay -> each engine (weight_sync/weight_relay.h). `cpu` selects it and
// `auto` resolves to it. `nccl` and `ipc` name transports that do not exist yet; they are refused
// with an error naming the key rather than silently falling back. New transports (in-process,
// CUDA IPC, NCCL) add a TransportKind and their rule here.
//
// Contract: a pure function; the recipe loader's cross-field check (core/recipe.cpp) refuses the
// same values with the key's file:line:col, this is the controller's defence in depth.
#pragma once

#include "core/recipe.h"
#include "core/status.h"

namespace tidal::weight_sync {

enum class TransportKind { kZmq };
const char* TransportName(TransportKind kind);

absl::StatusOr<TransportKind> SelectTransport(WeightSyncBackend backend, DeviceSet::Kind pool);

}  // namespace tidal::weight_sync
