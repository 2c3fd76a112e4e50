// One policy version over a broadcast group (weight_sync/broadcast_membership.h): the publisher
// (rank 0) streams the version bucket by bucket, each receiver lands it in a staging buffer,
// checks every bucket and the publisher's commit word, and applies it at a step boundary.
//
// Wire order per version (every rank calls the same collectives): bucket 0..count-1, each a
// broadcast of WireBytes from rank 0 (bf16 data + trailer), then a commit word {version,
// non-finite count, ok} broadcast once the publisher knows its pack was clean.
//
// Contract:
// - Communicator: NCCL in production (CUDA tensors, one GPU per rank); the shm backend (CPU)
//   runs the same code for tests. Collective: Send on rank 0 and Receive on the others together.
//   A failed collective fails the call; the group is then dead (rebuild it from a new ticket).
// - Pipelining (CUDA): the sender packs bucket k into ring slot k % depth on lane stream
//   k % depth; the broadcast of k waits only for that lane, and the pack of k + depth waits (by
//   lane order) for the broadcast of k to finish, so packing bucket k+1 overlaps sending k.
//   The receiver checksums bucket k on a lane while k+1 arrives. Lanes start after the caller's
//   current stream (sources ready) and the caller's stream waits for them at the end.
// - Atomicity: Receive writes only the staging buffer. Apply is the only call that touches the
//   engine's tensors, and only after a Receive returned OK for that version; a failed, partial
//   or corrupt transfer leaves them (and the engine's version) as they were.
// - Host waits: Send waits once at the end (the non-finite counter). Begin queues and returns;
//   Poll never blocks; Receive = Begin + wait. Apply queues on the caller's stream and returns.
// - Overlap: the rollout loop calls Begin, keeps stepping with the old weights, calls Poll at
//   each step boundary, and Apply once Poll says OK: the engine stops only for that copy.
// - One thread drives an instance.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "core/communicator.h"
#include "weight_sync/bucket_layout.h"
#include "weight_sync/transport.h"

namespace tidal::weight_sync {

class BroadcastSender {
 public:
  BroadcastSender(BucketLayout layout, at::Device device, int ring_depth = 2);
  ~BroadcastSender();
  // Streams `version` from `sources` (indexed like layout.params, fp32 or bf16 on `device`).
  // A source with non-finite values is still sent, but committed as not ok: receivers refuse
  // it and the call returns FailedPrecondition.
  absl::Status Send(Communicator& comm, std::span<const at::Tensor> sources, int64_t version);
  const BucketLayout& layout() const { return layout_; }

  // Test-only fault injection (weight_sync/fault_injection.h): called with each packed ring slot
  // (data + trailer) on its lane, before the slot is broadcast. Empty in production.
  using SlotHook = std::function<void(int32_t bucket, int64_t version, const at::Tensor& slot)>;
  void set_slot_hook(SlotHook hook) { slot_hook_ = std::move(hook); }

 private:
  struct Lanes;
  BucketLayout layout_;
  at::Device device_;
  SlotHook slot_hook_;
  std::vector<at::Tensor> ring_;
  std::unique_ptr<Lanes> lanes_;
};

// BroadcastSender behind the weights plane's Transport (TransportKind::kNccl): each Publish takes
// the policy's tensors from `sources` (indexed like layout.params, on `device`) and broadcasts
// them over `comm` (not owned; outlives the transport), whose other members run a
// BroadcastReceiver for the same version. PublishStats: gather_seconds = `sources`,
// send_seconds = the broadcast, bytes = the version's wire bytes.
class BroadcastTransport : public Transport {
 public:
  using Sources = std::function<absl::StatusOr<std::vector<at::Tensor>>()>;
  BroadcastTransport(BucketLayout layout, at::Device device, Communicator* comm, Sources sources,
                     int ring_depth = 2);

  TransportKind kind() const override { return TransportKind::kNccl; }
  absl::StatusOr<PublishStats> Publish(int64_t version) override;
  BroadcastSender& sender() { return sender_; }

 private:
  BroadcastSender sender_;
  Communicator* comm_;
  Sources sources_;
};

class BroadcastReceiver {
 public:
  BroadcastReceiver(BucketLayout layout, at::Device device, int lanes = 2);
  ~BroadcastReceiver();
  // Queues the whole version: each bucket's broadcast into staging and its checksum, the commit
  // word, and the copy of trailers, checksums and commit word to pinned host memory. On CUDA it
  // returns without waiting and runs on the receiver's own streams (after the work already on
  // the caller's stream, e.g. the previous Apply), so the engine keeps stepping meanwhile.
  // CPU: runs to completion.
  absl::Status Begin(Communicator& comm, int64_t version);
  // nullopt while the version is arriving; then its outcome, once: OK, DataLoss for a corrupt
  // or mis-stamped bucket, FailedPrecondition when the publisher committed it as not ok.
  std::optional<absl::Status> Poll();
  // Begin, then wait for the outcome.
  absl::Status Receive(Communicator& comm, int64_t version);
  // targets (the engine's bf16 tensors, indexed like layout.params) <- the received version, on
  // the caller's stream (the step boundary: this copy is the engine's pause).
  // FailedPrecondition unless the last version's outcome was OK.
  absl::Status Apply(std::span<const at::Tensor> targets);
  // Same through a per-bucket callback (e.g. Engine::UpdateWeightsFlat): a bf16 view of the
  // bucket's data and the bucket's parameters. Stops at the first error.
  using FlatApply = std::function<absl::Status(const at::Tensor& flat, std::span<const ParamSpec> params)>;
  absl::Status ApplyFlat(const FlatApply& apply);

  int64_t received_version() const { return ready_version_; }
  bool in_flight() const { return in_flight_ >= 0; }
  const at::Tensor& staging() const { return staging_; }
  const BucketLayout& layout() const { return layout_; }

 private:
  struct Lanes;
  absl::Status Finish();

  BucketLayout layout_;
  at::Device device_;
  at::Tensor staging_, checksums_;
  at::Tensor host_trailers_, host_checksums_, host_commit_;  // pinned on CUDA
  int64_t ready_version_ = -1;
  int64_t in_flight_ = -1;
  absl::Status begin_error_;
  std::unique_ptr<Lanes> lanes_;
};

}  // namespace tidal::weight_sync
