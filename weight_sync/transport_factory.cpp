#include "weight_sync/transport_factory.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace tidal::weight_sync {

absl::StatusOr<TransportKind> SelectTransport(WeightSyncBackend backend, DeviceSet::Kind pool, PoolPolicy policy) {
  const bool colocated = policy == PoolPolicy::kColocated;
  const bool gpu = pool == DeviceSet::Kind::kCuda;
  switch (backend) {
    case WeightSyncBackend::kAuto:
      // On CPU pools the relay stays the default: it is what the CPU quickstart measures and the
      // CPU copy costs the same either way.
      if (!gpu) return TransportKind::kZmq;
      return colocated ? TransportKind::kInProcess : TransportKind::kNccl;
    case WeightSyncBackend::kCpu:
      return TransportKind::kZmq;
    case WeightSyncBackend::kInprocess:
      if (colocated) return TransportKind::kInProcess;
      return absl::InvalidArgumentError(absl::StrCat(
          "weight_sync.backend: `inprocess` needs every engine in a train rank's worker (pool.policy: colocated), "
          "not `", std::string(EnumName(policy)), "`; use `auto` or `cpu`"));
    case WeightSyncBackend::kNccl:
      // CPU pools: the same broadcast protocol over the shm backend (weight_sync/broadcast_group.h).
      if (!colocated) return TransportKind::kNccl;
      return absl::InvalidArgumentError(
          "weight_sync.backend: `nccl` broadcasts to engines outside the train ranks, and with pool.policy colocated "
          "every engine is in a train rank's worker; use `auto` or `inprocess`");
    case WeightSyncBackend::kIpc:
      break;
  }
  return absl::InvalidArgumentError(
      "weight_sync.backend: `ipc` needs a trainer and an engine in two processes on one GPU, which the pool never "
      "places; use `nccl`, `cpu` or `auto`");
}

absl::StatusOr<TransportKind> ResolveTransport(WeightSyncBackend backend, const SyncPlacement& p) {
  const bool gpu = p.pool == DeviceSet::Kind::kCuda;
  auto refuse = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight_sync.backend: `", std::string(EnumName(backend)), "` ", why));
  };
  switch (backend) {
    case WeightSyncBackend::kCpu:
      return TransportKind::kZmq;
    case WeightSyncBackend::kAuto:
      if (!gpu) return TransportKind::kZmq;
      if (p.same_process) return TransportKind::kInProcess;
      return p.same_device ? TransportKind::kIpc : TransportKind::kNccl;
    case WeightSyncBackend::kNccl:
      if (p.same_process) return refuse("needs the engine in another process than the trainer; use `auto`");
      if (gpu && p.same_device) {
        return refuse("needs the trainer and the engine on different GPUs (one GPU per NCCL rank); use `auto`");
      }
      return TransportKind::kNccl;  // CPU pools: the shm backend
    case WeightSyncBackend::kInprocess:
      if (!p.same_process) return refuse("needs the engine in the trainer's worker process; use `auto`");
      return TransportKind::kInProcess;
    case WeightSyncBackend::kIpc:
      if (!gpu) return refuse("needs a CUDA pool; use `cpu` or `auto`");
      if (!p.same_device) return refuse("needs the trainer and the engine on the same GPU; use `nccl` or `auto`");
      if (p.same_process) return refuse("needs two processes (CUDA IPC cannot map memory into its own process); use `auto`");
      return TransportKind::kIpc;
  }
  return refuse("is unknown");
}

}  // namespace tidal::weight_sync
