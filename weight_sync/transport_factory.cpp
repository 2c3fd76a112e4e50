#include "weight_sync/transport_factory.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace tidal::weight_sync {

absl::StatusOr<TransportKind> SelectTransport(WeightSyncBackend backend, DeviceSet::Kind pool, PoolPolicy policy) {
  const bool colocated = policy == PoolPolicy::kColocated;
  switch (backend) {
    case WeightSyncBackend::kAuto:
      // On CPU pools the relay stays the default: it is what the CPU quickstart measures and the
      // CPU copy costs the same either way.
      return colocated && pool == DeviceSet::Kind::kCuda ? TransportKind::kInProcess : TransportKind::kZmq;
    case WeightSyncBackend::kCpu:
      return TransportKind::kZmq;
    case WeightSyncBackend::kInprocess:
      if (colocated) return TransportKind::kInProcess;
      return absl::InvalidArgumentError(absl::StrCat(
          "weight_sync.backend: `inprocess` needs every engine in a train rank's worker (pool.policy: colocated), "
          "not `", std::string(EnumName(policy)), "`; use `auto` or `cpu`"));
    case WeightSyncBackend::kNccl:
    case WeightSyncBackend::kIpc:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "weight_sync.backend: `", std::string(EnumName(backend)), "` is not available",
      pool == DeviceSet::Kind::kCpu ? " on a CPU pool" : " yet",
      "; use `cpu` (ZeroMQ through the controller) or `auto`"));
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
      if (!gpu) return refuse("needs a CUDA pool; use `cpu` or `auto`");
      if (p.same_device) return refuse("needs the trainer and the engine on different GPUs (one GPU per NCCL rank); use `auto`");
      return TransportKind::kNccl;
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
