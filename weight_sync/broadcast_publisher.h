// The broadcast weight transport as `tidal run` drives it (TransportKind::kNccl): the train
// ranks' side (BroadcastPublisher) and the engines' side (BroadcastSubscriber) of the group the
// controller keeps in a BroadcastMembership (weight_sync/broadcast_membership.h). The wire is
// BroadcastSender / BroadcastReceiver (weight_sync/broadcast_transfer.h): bf16 buckets (the
// engine's dtype), per-bucket checksums and a commit word; the group is NCCL on CUDA pools and
// the shm backend on CPU pools (weight_sync/broadcast_group.h ConnectWeightGroup).
//
// One version, in order (scheduler/protocol.h has the messages):
//   controller -> publisher   the epoch (SetEpoch): number, world size, group name base
//   publisher                 gathers the policy (a collective over the train group); a train
//                             rank that hosts an engine installs its own copy (LocalInstall)
//   publisher -> controller   the epoch's rendezvous key (Hooks::publish_id), once per epoch,
//                             before it waits for the receivers to connect
//   controller -> receivers   their tickets; each receiver Join()s (connects)
//   publisher -> controller   Hooks::starting(epoch, version); controller -> receivers: Begin
//   publisher                 broadcasts the buckets and the commit word; Hooks::done
//   receivers                 Poll() at engine step boundaries; once OK, apply StagedWeights()
// Every connect and collective is bounded by `timeout`. A failed connect or collective leaves the
// group dead on that side (BroadcastOutcome::group_dead; the subscriber drops it too): the
// controller starts a new epoch and resends the version, and the engines keep their old one.
//
// Contract: each object is driven by one thread (its worker's); not thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "core/communicator.h"
#include "core/model.h"
#include "weight_sync/broadcast_group.h"
#include "weight_sync/broadcast_transfer.h"
#include "weight_sync/bucket_layout.h"
#include "weight_sync/transport.h"

namespace tidal::weight_sync {

// The controller's current epoch, as the publisher sees it.
struct BroadcastEpoch {
  int64_t epoch = 0;
  int32_t world_size = 1;  // 1: no receiver (nothing is broadcast)
  std::string group_base;  // shm group names (CPU): `<group_base>.e<epoch>`
};

// What one broadcast did on the publisher.
struct BroadcastOutcome {
  int64_t epoch = 0;
  int64_t version = 0;
  absl::Status status;
  bool group_dead = false;  // a connect or collective failed: the epoch cannot be used again
  int64_t bytes = 0;        // wire bytes of the version (0 unless status is OK)
  int32_t receivers = 0;
  double connect_seconds = 0, send_seconds = 0;
};

struct BroadcastOptions {
  std::string device = "cpu";  // "cpu" or "cuda:N": where the buckets live and the group runs
  BucketLayout layout;         // PlanBuckets(ParamSpecs(config), bucket bytes), same on every side
  absl::Duration timeout = absl::Seconds(120);  // weight_sync.timeout_s
  int ring_depth = 2;
};

class BroadcastPublisher : public Transport {
 public:
  // The full policy by HF name (a collective over the train group: every rank calls it).
  using Gather = std::function<absl::StatusOr<NamedTensors>()>;
  // A train rank that also hosts an engine installs the gathered version itself (elastic pools).
  using LocalInstall = std::function<absl::Status(const NamedTensors& weights, int64_t version)>;
  struct Hooks {
    PublishGroupId publish_id;                                     // the epoch's key -> controller
    std::function<void(int64_t epoch, int64_t version)> starting;  // -> controller -> receivers
    std::function<void(const BroadcastOutcome&)> done;
  };

  // `publisher`: this rank is train rank 0 (it broadcasts); other ranks only gather (and install
  // locally). TIDAL_FAULT_CORRUPT_BUCKET (weight_sync/fault_injection.h) is read here.
  BroadcastPublisher(BroadcastOptions options, bool publisher, Gather gather, LocalInstall local, Hooks hooks);
  ~BroadcastPublisher() override;

  TransportKind kind() const override { return TransportKind::kNccl; }
  // Gathers (and installs locally); on the publisher broadcasts to the epoch's receivers. A
  // failed broadcast is reported through Hooks::done and Publish still returns OK (bytes 0): the
  // trainer's version stands, the controller heals the engines by a resend. A failed gather or
  // local install is an error.
  absl::StatusOr<PublishStats> Publish(int64_t version) override;

  // The controller's epoch (protocol.h WeightGroupEpoch); takes effect at the next Publish.
  void SetEpoch(BroadcastEpoch epoch) { epoch_ = std::move(epoch); }
  const BroadcastEpoch& epoch() const { return epoch_; }
  int64_t connected_epoch() const { return comm_ ? comm_epoch_ : -1; }

 private:
  BroadcastOutcome Broadcast(const NamedTensors& weights, int64_t version);

  BroadcastOptions options_;
  bool publisher_;
  Gather gather_;
  LocalInstall local_;
  Hooks hooks_;
  BroadcastEpoch epoch_;
  std::unique_ptr<Communicator> comm_;
  int64_t comm_epoch_ = -1;
  std::unique_ptr<BroadcastSender> sender_;  // publisher only
};

class BroadcastSubscriber {
 public:
  explicit BroadcastSubscriber(BroadcastOptions options);
  ~BroadcastSubscriber();

  // Drops the current group and connects to `ticket`'s epoch (blocks until every member joined,
  // or `timeout`).
  absl::Status Join(const GroupTicket& ticket);
  // Starts receiving `version` (protocol.h WeightIncoming). FailedPrecondition when this
  // receiver is not connected to `epoch` or a version is still arriving.
  absl::Status Begin(int64_t epoch, int64_t version);
  // The outcome of the version in flight, once (nullopt while it arrives or when none is): OK,
  // DataLoss for a corrupt bucket, FailedPrecondition for a version committed as not ok, or the
  // collective's error (the group is then dropped).
  std::optional<absl::Status> Poll();
  // The verified version as bf16 views into the staging buffer, by HF name (valid until the next
  // Begin); FailedPrecondition unless the last outcome was OK.
  absl::StatusOr<NamedTensors> StagedWeights() const;

  int64_t epoch() const { return comm_ ? comm_epoch_ : -1; }
  bool in_flight() const { return receiver_.in_flight(); }
  int64_t version_in_flight() const { return in_flight_version_; }
  int64_t version_bytes() const { return options_.layout.staging_bytes; }

 private:
  BroadcastOptions options_;
  BroadcastReceiver receiver_;
  std::unique_ptr<Communicator> comm_;
  int64_t comm_epoch_ = -1;
  int64_t in_flight_version_ = -1;
};

}  // namespace tidal::weight_sync
