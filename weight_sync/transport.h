// The weights plane's transport: how one policy version gets from the train ranks to the engines.
//
// TransportKind names the transports (the controller picks one from `weight_sync.backend` and the
// pool, weight_sync/transport_factory.h, and sends it to each worker in WorkerSetup); Transport is
// the trainer-side interface every one of them implements, so the worker publishes a version
// without knowing which one it holds:
//   kZmq        ZmqTransport (weight_sync/zmq_transport.h): CRC-checked buckets over the control
//               plane to the controller's relay (weight_sync/weight_relay.h), which streams them to
//               each engine's WeightAssembler.
//   kInProcess  InProcessTransport (weight_sync/inprocess_transport.h): the train rank copies the
//               policy into the engine of its own worker, device to device.
//   kNccl       BroadcastPublisher (weight_sync/broadcast_publisher.h) in `tidal run`, over
//               BroadcastSender (weight_sync/broadcast_transfer.h; BroadcastTransport is the bare
//               one `tidal bench weight-sync` drives): pipelined, verified broadcast from train
//               rank 0 to the engine workers, NCCL across GPUs, the shm backend on CPU pools.
//   kIpc        IpcTransport (weight_sync/cuda_ipc.h): CUDA IPC buffers for an engine process on
//               the trainer's GPU.
// `tidal run` drives kZmq, kInProcess and kNccl; kIpc runs in `tidal bench weight-sync` only
// (SelectTransport refuses it for a run, naming the key).
//
// Contract:
// - Publish(version) is called on the owning worker's thread, once per version, versions
//   increasing. Collective: every train rank calls it with the same version in the same order
//   (gathering the full policy from the shards is a collective); which ranks send is the
//   implementation's business.
// - All or nothing towards the engines: a version is installed whole and verified (checksums,
//   finiteness) or not at all; an error return means this rank did not publish `version`.
//   (BroadcastPublisher reports a failed broadcast to the controller and returns OK with 0
//   bytes: the trainer's version stands and the controller resends it to the engines.)
// - Not thread-safe; one owner.
//
// On the wire a TransportKind is its name (TransportName); decoding any other value throws
// nlohmann::json::type_error (Envelope::As: InvalidArgument).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"
#include "core/clock.h"

namespace tidal::weight_sync {

enum class TransportKind { kZmq, kInProcess, kIpc, kNccl };
const char* TransportName(TransportKind kind);  // "zmq" | "inprocess" | "cuda-ipc" | "nccl"
std::optional<TransportKind> ParseTransportName(std::string_view name);

void to_json(nlohmann::json& j, TransportKind kind);
void from_json(const nlohmann::json& j, TransportKind& kind);

// What one Publish did on this rank.
struct PublishStats {
  int64_t version = 0;
  int64_t bytes = 0;           // bytes this rank sent or copied (0 on ranks that only gather)
  double gather_seconds = 0;   // the full policy assembled from the shards (a collective)
  double send_seconds = 0;     // handing it to the transport (send, copy, broadcast)
  double seconds = 0;          // the whole call
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual TransportKind kind() const = 0;
  virtual absl::StatusOr<PublishStats> Publish(int64_t version) = 0;
};

// The shape every Publish has: `gather()` produces the version (a StatusOr; timed as
// gather_seconds), `send(gathered&)` hands it over and returns the bytes it moved (a
// StatusOr<int64_t>; timed as send_seconds). The first error ends the call.
template <class Gather, class Send>
absl::StatusOr<PublishStats> TimedPublish(int64_t version, Gather&& gather, Send&& send) {
  const MonoTime t0 = MonoNow();
  PublishStats out;
  out.version = version;
  auto gathered = gather();
  if (!gathered.ok()) return gathered.status();
  out.gather_seconds = SecondsSince(t0);
  const MonoTime t_send = MonoNow();
  absl::StatusOr<int64_t> bytes = send(*gathered);
  if (!bytes.ok()) return bytes.status();
  out.bytes = *bytes;
  out.send_seconds = SecondsSince(t_send);
  out.seconds = SecondsSince(t0);
  return out;
}

}  // namespace tidal::weight_sync
