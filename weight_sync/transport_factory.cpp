#include "weight_sync/transport_factory.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace tidal::weight_sync {

const char* TransportName(TransportKind kind) {
  switch (kind) {
    case TransportKind::kZmq:
      return "zmq";
    case TransportKind::kInProcess:
      return "inprocess";
  }
  return "?";
}

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

}  // namespace tidal::weight_sync
