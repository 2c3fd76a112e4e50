// The in-process transport of the weights plane: the trainer and the engine live in one worker
// process on one device (pool.policy colocated on CUDA), so a policy version goes from the
// trainer's shards to the engine's parameter storage device to device, in the engine's dtype,
// with no host hop and nothing through the controller.
//
// Contract:
// - Publish(version) runs on the worker thread. It calls `gather` (a collective over the train
//   group: every colocated rank publishes), checks the result (every parameter on the engine's
//   device kind, in the engine's dtype, all finite), then calls `install`, which must copy the
//   tensors into the engine's existing storage (rollout::Engine::UpdateWeights does) before it
//   returns: the gathered buffers are freed when Publish returns.
// - All or nothing: a version that fails a check is not installed, and the error names the
//   first offending tensor; the engine keeps serving its previous version.
// - The finiteness check is one fused reduction on the device and one device-to-host copy of a
//   single flag (the invariant "nothing non-finite is published to rollout").
#pragma once

#include <cstdint>
#include <functional>

#include "core/model.h"
#include "weight_sync/transport.h"

namespace tidal::weight_sync {

// PublishStats: bytes = parameter bytes copied into the engine (its dtype); gather_seconds the
// collective gather in the engine's dtype; send_seconds the check and the install.
class InProcessTransport : public Transport {
 public:
  using Gather = std::function<absl::StatusOr<NamedTensors>(at::ScalarType dtype)>;
  using Install = std::function<absl::Status(const NamedTensors& weights, int64_t version)>;

  // `device_type` is where both sides live (kCUDA for the colocated GPU path; kCPU is accepted so
  // the transport can be tested without a GPU).
  InProcessTransport(at::ScalarType engine_dtype, at::DeviceType device_type, Gather gather, Install install);

  TransportKind kind() const override { return TransportKind::kInProcess; }
  absl::StatusOr<PublishStats> Publish(int64_t version) override;

  at::ScalarType engine_dtype() const { return dtype_; }

 private:
  at::ScalarType dtype_;
  at::DeviceType device_type_;
  Gather gather_;
  Install install_;
};

}  // namespace tidal::weight_sync
