#include "weight_sync/transport_factory.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace tidal::weight_sync {

const char* TransportName(TransportKind kind) {
  switch (kind) {
    case TransportKind::kZmq:
      return "zmq";
  }
  return "?";
}

absl::StatusOr<TransportKind> SelectTransport(WeightSyncBackend backend, DeviceSet::Kind pool) {
  switch (backend) {
    case WeightSyncBackend::kAuto:
    case WeightSyncBackend::kCpu:
      return TransportKind::kZmq;
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
