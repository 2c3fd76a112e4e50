#include "weight_sync/transport.h"

#include "core/message.h"

namespace tidal::weight_sync {

namespace {
constexpr TransportKind kAll[] = {TransportKind::kZmq, TransportKind::kInProcess, TransportKind::kIpc,
                                  TransportKind::kNccl};
}  // namespace

const char* TransportName(TransportKind kind) {
  switch (kind) {
    case TransportKind::kZmq:
      return "zmq";
    case TransportKind::kInProcess:
      return "inprocess";
    case TransportKind::kIpc:
      return "cuda-ipc";
    case TransportKind::kNccl:
      return "nccl";
  }
  return "?";
}

std::optional<TransportKind> ParseTransportName(std::string_view name) {
  for (TransportKind k : kAll) {
    if (name == TransportName(k)) return k;
  }
  return std::nullopt;
}

void to_json(nlohmann::json& j, TransportKind kind) { j = TransportName(kind); }

void from_json(const nlohmann::json& j, TransportKind& kind) {
  EnumFromName(j, kind, ParseTransportName, "weight transport");
}

}  // namespace tidal::weight_sync
