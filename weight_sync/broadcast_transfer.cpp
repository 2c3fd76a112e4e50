#include "weight_sync/broadcast_transfer.h"

#include <optional>

#include "weight_sync/bucket_ops.h"

#ifdef TIDAL_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace tidal::weight_sync {
namespace {

// Commit word: {version, non-finite count, ok}.
constexpr int64_t kCommitWords = 3;

}  // namespace

// Side streams that let consecutive buckets overlap, plus a private stream for a receiver's
// bookkeeping and its completion event (CUDA); on CPU everything runs inline and is done at once.
struct LaneSet {
  at::Device device;
#ifdef TIDAL_WITH_CUDA
  std::vector<c10::cuda::CUDAStream> streams;
  std::optional<c10::cuda::CUDAStream> main;
  std::optional<at::cuda::CUDAEvent> done;
#endif
  LaneSet(at::Device d, int n) : device(d) {
#ifdef TIDAL_WITH_CUDA
    if (d.is_cuda()) {
      for (int i = 0; i < n; ++i) streams.push_back(c10::cuda::getStreamFromPool(false, d.index()));
      main = c10::cuda::getStreamFromPool(false, d.index());
    }
#endif
  }
  // Lanes start after the work already queued on the current stream.
  void Start() {
#ifdef TIDAL_WITH_CUDA
    if (streams.empty()) return;
    at::cuda::CUDAEvent ready;
    ready.record(c10::cuda::getCurrentCUDAStream(device.index()));
    for (auto& s : streams) ready.block(s);
#endif
  }
  // The current stream continues after every lane.
  void Join() {
#ifdef TIDAL_WITH_CUDA
    if (streams.empty()) return;  // CPU: nothing to join (and no CUDA to touch)
    auto cur = c10::cuda::getCurrentCUDAStream(device.index());
    for (auto& s : streams) {
      at::cuda::CUDAEvent e;
      e.record(s);
      e.block(cur);
    }
#endif
  }
  // Runs fn with lane k as the current stream.
  template <typename Fn>
  auto On(int64_t k, Fn&& fn) {
#ifdef TIDAL_WITH_CUDA
    std::optional<c10::cuda::CUDAStreamGuard> guard;
    if (!streams.empty()) guard.emplace(streams[k % streams.size()]);
#endif
    return fn();
  }
  // Runs fn on the private stream, which first waits for the caller's current stream.
  template <typename Fn>
  auto OnPrivate(Fn&& fn) {
#ifdef TIDAL_WITH_CUDA
    std::optional<c10::cuda::CUDAStreamGuard> guard;
    if (main) {
      at::cuda::CUDAEvent caller;
      caller.record(c10::cuda::getCurrentCUDAStream(device.index()));
      caller.block(*main);
      guard.emplace(*main);
    }
#endif
    return fn();
  }
  void MarkDone() {
#ifdef TIDAL_WITH_CUDA
    if (main) {
      done.emplace();
      done->record(*main);
    }
#endif
  }
  bool Done() {
#ifdef TIDAL_WITH_CUDA
    return !done || done->query();
#else
    return true;
#endif
  }
  void WaitDone() {
#ifdef TIDAL_WITH_CUDA
    if (done) done->synchronize();
#endif
  }
  void CallerWaitsDone() {
#ifdef TIDAL_WITH_CUDA
    if (done) done->block(c10::cuda::getCurrentCUDAStream(device.index()));
#endif
  }
};

struct BroadcastSender::Lanes : LaneSet {
  using LaneSet::LaneSet;
};
struct BroadcastReceiver::Lanes : LaneSet {
  using LaneSet::LaneSet;
};

BroadcastSender::BroadcastSender(BucketLayout layout, at::Device device, int ring_depth)
    : layout_(std::move(layout)), device_(device), lanes_(std::make_unique<Lanes>(device, ring_depth)) {
  TORCH_CHECK(ring_depth >= 1, "weight sync: ring depth must be at least 1");
  for (int i = 0; i < ring_depth; ++i) {
    ring_.push_back(at::empty({layout_.max_wire_bytes}, at::TensorOptions().dtype(at::kByte).device(device)));
  }
}
BroadcastSender::~BroadcastSender() = default;

absl::Status BroadcastSender::Send(Communicator& comm, std::span<const at::Tensor> sources, int64_t version) {
  if (comm.rank() != 0) return absl::FailedPreconditionError("weight sync: the publisher must be rank 0");
  at::Tensor nonfinite = at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(device_));
  lanes_->Start();
  absl::Status status;
  for (int32_t b = 0; b < layout_.count() && status.ok(); ++b) {
    status = lanes_->On(b, [&]() -> absl::Status {
      at::Tensor slot = ring_[b % ring_.size()].narrow(0, 0, layout_.buckets[b].WireBytes(layout_.element_bytes));
      try {
        PackBucket(layout_, b, sources, slot, version, nonfinite);
        if (slot_hook_) slot_hook_(b, version, slot);
      } catch (const c10::Error& e) {
        return absl::InvalidArgumentError(e.what_without_backtrace());
      }
      return comm.Broadcast(slot, 0);
    });
  }
  lanes_->Join();
  if (!status.ok()) return status;
  const int64_t bad = NonFinite(nonfinite);
  at::Tensor commit = at::tensor({version, bad, static_cast<int64_t>(bad == 0)}, at::kLong).to(device_);
  TIDAL_RETURN_IF_ERROR(comm.Broadcast(commit, 0));
  if (bad != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight version %d has %d non-finite values; receivers keep their weights", version, bad));
  }
  return absl::OkStatus();
}

BroadcastReceiver::BroadcastReceiver(BucketLayout layout, at::Device device, int lanes)
    : layout_(std::move(layout)), device_(device), lanes_(std::make_unique<Lanes>(device, lanes)) {
  staging_ = at::empty({layout_.staging_bytes}, at::TensorOptions().dtype(at::kByte).device(device));
  checksums_ = at::zeros({layout_.count()}, at::TensorOptions().dtype(at::kLong).device(device));
  auto host = at::TensorOptions().pinned_memory(device.is_cuda());
  host_trailers_ = at::empty({layout_.count() * static_cast<int64_t>(sizeof(BucketTrailer))}, host.dtype(at::kByte));
  host_checksums_ = at::empty({layout_.count()}, host.dtype(at::kLong));
  host_commit_ = at::empty({kCommitWords}, host.dtype(at::kLong));
}
BroadcastReceiver::~BroadcastReceiver() = default;

absl::Status BroadcastReceiver::Begin(Communicator& comm, int64_t version) {
  if (in_flight_ >= 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight sync: version %d is still arriving; cannot begin %d", in_flight_, version));
  }
  ready_version_ = -1;  // the staging buffer is about to change
  if (comm.rank() == 0) return absl::FailedPreconditionError("weight sync: rank 0 is the publisher");
  in_flight_ = version;
  begin_error_ = absl::OkStatus();
  absl::Status status = lanes_->OnPrivate([&]() -> absl::Status {
    lanes_->Start();
    absl::Status s;
    for (int32_t b = 0; b < layout_.count() && s.ok(); ++b) {
      s = lanes_->On(b, [&]() -> absl::Status {
        TIDAL_RETURN_IF_ERROR(comm.Broadcast(BucketView(layout_, staging_, b), 0));
        ChecksumBuckets(layout_, staging_, b, b + 1, checksums_);
        return absl::OkStatus();
      });
    }
    lanes_->Join();
    TIDAL_RETURN_IF_ERROR(s);
    at::Tensor commit = at::zeros({kCommitWords}, at::TensorOptions().dtype(at::kLong).device(device_));
    TIDAL_RETURN_IF_ERROR(comm.Broadcast(commit, 0));
    host_trailers_.copy_(GatherTrailers(layout_, staging_, 0, layout_.count()), /*non_blocking=*/true);
    host_checksums_.copy_(checksums_, /*non_blocking=*/true);
    host_commit_.copy_(commit, /*non_blocking=*/true);
    lanes_->MarkDone();
    return absl::OkStatus();
  });
  // A failed collective: the outcome is that error (the group is dead; the caller rebuilds it).
  if (!status.ok()) begin_error_ = status;
  return absl::OkStatus();
}

std::optional<absl::Status> BroadcastReceiver::Poll() {
  if (in_flight_ < 0) return std::nullopt;
  if (begin_error_.ok() && !lanes_->Done()) return std::nullopt;
  return Finish();
}

absl::Status BroadcastReceiver::Finish() {
  const int64_t version = in_flight_;
  in_flight_ = -1;
  TIDAL_RETURN_IF_ERROR(begin_error_);
  TIDAL_RETURN_IF_ERROR(CheckTrailers(layout_, host_trailers_, host_checksums_, 0, layout_.count(), version));
  const int64_t* w = host_commit_.data_ptr<int64_t>();
  if (w[0] != version) {
    return absl::DataLossError(absl::StrFormat("weight version %d: the publisher committed version %d", version, w[0]));
  }
  if (w[2] != 1) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight version %d: the publisher found %d non-finite values; keeping the current weights", version, w[1]));
  }
  ready_version_ = version;
  return absl::OkStatus();
}

absl::Status BroadcastReceiver::Receive(Communicator& comm, int64_t version) {
  TIDAL_RETURN_IF_ERROR(Begin(comm, version));
  lanes_->WaitDone();
  return *Poll();
}

absl::Status BroadcastReceiver::Apply(std::span<const at::Tensor> targets) {
  if (ready_version_ < 0) return absl::FailedPreconditionError("weight sync: no verified version to apply");
  lanes_->CallerWaitsDone();
  try {
    ApplyBuckets(layout_, staging_, 0, layout_.count(), targets);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(e.what_without_backtrace());
  }
  return absl::OkStatus();
}

absl::Status BroadcastReceiver::ApplyFlat(const FlatApply& apply) {
  if (ready_version_ < 0) return absl::FailedPreconditionError("weight sync: no verified version to apply");
  lanes_->CallerWaitsDone();
  for (int32_t b = 0; b < layout_.count(); ++b) {
    const BucketPlan& plan = layout_.buckets[b];
    at::Tensor flat = staging_.narrow(0, plan.byte_offset, plan.numel * layout_.element_bytes).view(at::kBFloat16);
    std::vector<ParamSpec> params = layout_.BucketParams(b);
    TIDAL_RETURN_IF_ERROR(apply(flat, params));
  }
  return absl::OkStatus();
}

BroadcastTransport::BroadcastTransport(BucketLayout layout, at::Device device, Communicator* comm, Sources sources,
                                       int ring_depth)
    : sender_(std::move(layout), device, ring_depth), comm_(comm), sources_(std::move(sources)) {}

absl::StatusOr<PublishStats> BroadcastTransport::Publish(int64_t version) {
  return TimedPublish(version, sources_, [&](const std::vector<at::Tensor>& sources) -> absl::StatusOr<int64_t> {
    TIDAL_RETURN_IF_ERROR(sender_.Send(*comm_, sources, version));
    return sender_.layout().staging_bytes;
  });
}

}  // namespace tidal::weight_sync
