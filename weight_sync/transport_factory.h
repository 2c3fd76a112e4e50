// The one place that turns `weight_sync.backend` into the weights plane's transport.
//
// Three transports in `tidal run`:
// - zmq: ZeroMQ frames on the control plane, trainer rank 0 -> the controller's WeightRelay ->
//   each engine (weight_sync/weight_relay.h). `cpu` selects it; `auto` on CPU pools.
// - inprocess: every engine shares its worker process (and device) with a train rank
//   (pool.policy colocated): each rank copies the policy into its own engine, device to device
//   in the engine's dtype (weight_sync/inprocess_transport.h); nothing goes through the
//   controller. `auto` on colocated CUDA pools; `inprocess` asks for it on any colocated pool.
// - nccl: train rank 0 broadcasts each version (bf16 buckets, checksummed) to the engine workers
//   without a trainer in a group of their own (weight_sync/broadcast_publisher.h; the controller
//   keeps its membership, scheduler/broadcast_control.h): NCCL on CUDA pools, where `auto` picks
//   it for static and elastic pools (engines on other GPUs than the trainers); the shm backend on
//   CPU pools, where only `nccl` asks for it (tests and CPU runs of the same protocol). Refused
//   for colocated pools (every engine is in a train rank's worker: nobody to broadcast to).
// `ipc` (weight_sync/cuda_ipc.h, measured by `tidal bench weight-sync`) needs two processes on
// one GPU, which the pool never places: SelectTransport refuses it naming the key rather than
// silently falling back, and so `inprocess` without colocated workers. ResolveTransport is the
// full rule by placement.
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

// The rule by placement (issue #14): `auto` picks in-process when trainer and engine share a
// process, CUDA IPC when they share a GPU in different processes, NCCL broadcast across GPUs,
// ZeroMQ on CPU pools; `cpu` is ZeroMQ anywhere; `inprocess`, `nccl` and `ipc` are checked against
// the placement (the broadcast needs two processes, and a GPU per side on CUDA pools; IPC one GPU
// and two processes) and refused naming the key. `nccl` on a CPU pool is the shm broadcast.
// The transports: weight_sync/broadcast_transfer.h (NCCL), weight_sync/cuda_ipc.h (IPC),
// weight_sync/bucket_ops.h PackDirect (in-process). SelectTransport below is what `tidal run`
// accepts today.
absl::StatusOr<TransportKind> ResolveTransport(WeightSyncBackend backend, const SyncPlacement& placement);

absl::StatusOr<TransportKind> SelectTransport(WeightSyncBackend backend, DeviceSet::Kind pool, PoolPolicy policy);

}  // namespace tidal::weight_sync
