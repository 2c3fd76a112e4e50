// The ZeroMQ transport of the weights plane (TransportKind::kZmq), trainer side: the full policy
// is gathered from the shards (a collective over the train group), train rank 0 cuts it into
// CRC-32C-checked buckets (weight_sync/weight_packer.h) and hands each to `send` (the worker sends
// it over its control-plane Dealer to the controller's WeightRelay, which streams it to every
// engine's WeightAssembler). An engine in the publishing worker's own process gets the gathered
// tensors directly through `local_install` instead of a round trip through the controller.
//
// Contract (see weight_sync/transport.h): Publish on the worker thread, same version on every
// train rank. `gather` is the collective; it returns the full fp32 policy on the ranks that need it
// (rank 0, and every rank with a local engine). `send` is called in bucket order, all buckets of
// a version before Publish returns; the first failed send ends the call with its error (the
// relay then never completes that version, and engines keep the previous one).
#pragma once

#include <cstdint>
#include <functional>

#include "core/model.h"
#include "weight_sync/transport.h"
#include "weight_sync/weight_bucket.h"

namespace tidal::weight_sync {

class ZmqTransport : public Transport {
 public:
  using Gather = std::function<absl::StatusOr<NamedTensors>()>;
  using Send = std::function<absl::Status(const WeightBucket& header, Payload bytes)>;
  // Optional (empty = no engine in this worker).
  using LocalInstall = std::function<absl::Status(const NamedTensors& weights, int64_t version)>;

  // `sends`: whether this rank packs and sends the buckets (train rank 0). `bucket_bytes` > 0.
  ZmqTransport(Gather gather, bool sends, int64_t bucket_bytes, Send send, LocalInstall local_install = {});

  TransportKind kind() const override { return TransportKind::kZmq; }
  absl::StatusOr<PublishStats> Publish(int64_t version) override;

 private:
  Gather gather_;
  bool sends_;
  int64_t bucket_bytes_;
  Send send_;
  LocalInstall local_install_;
};

}  // namespace tidal::weight_sync
