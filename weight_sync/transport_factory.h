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
// `nccl` and `ipc` name transports that exist as library code (weight_sync/broadcast_transfer.h,
// weight_sync/cuda_ipc.h, measured by `tidal bench weight-sync`) but that `tidal run` does not
// drive yet; SelectTransport refuses them naming the key rather than silently falling back, and
// so `inprocess` without colocated workers. ResolveTransport is the full rule by placement.
//
// Contract: a pure function; the recipe loader's cross-field check (core/recipe.cpp) refuses the
// same values with the key's file:line:col, this is the controller's defence in depth.
#pragma once

#include "core/recipe.h"
#include "core/status.h"
#include "weight_sync/transport.h"

namespace tidal::weight_sync {


// Where one trainer -> engine transfer runs: the pool's kind, and whether the two share a worker
// process (colocated in-process) or a GPU (two processes on one device).
struct SyncPlacement {
  DeviceSet::Kind pool = DeviceSet::Kind::kCpu;
  bool same_process = false;
  bool same_device = false;
};

// The rule for GPU pools (issue #14): `auto` picks in-process when trainer and engine share a
// process, CUDA IPC when they share a GPU in different processes, NCCL broadcast across GPUs,
// ZeroMQ on CPU pools; `cpu` is ZeroMQ anywhere; `inprocess`, `nccl` and `ipc` are checked against
// the placement (NCCL needs a GPU per side, IPC one GPU and two processes) and refused naming the key.
// The transports: weight_sync/broadcast_transfer.h (NCCL), weight_sync/cuda_ipc.h (IPC),
// weight_sync/bucket_ops.h PackDirect (in-process). SelectTransport below is what `tidal run`
// accepts today.
absl::StatusOr<TransportKind> ResolveTransport(WeightSyncBackend backend, const SyncPlacement& placement);

absl::StatusOr<TransportKind> SelectTransport(WeightSyncBackend backend, DeviceSet::Kind pool, PoolPolicy policy);

}  // namespace tidal::weight_sync
