#include "weight_sync/broadcast_publisher.h"

#include <set>

#include "core/clock.h"
#include "core/logging.h"
#include "weight_sync/fault_injection.h"

namespace tidal::weight_sync {
namespace {

// TIDAL_FAULT_CORRUPT_BUCKET on the wire: one byte of bucket 0's data flipped after the pack
// wrote its checksum, on the first broadcast of the version (every one when `resends`).
BroadcastSender::SlotHook CorruptSlotHook(CorruptBucketFault fault) {
  auto sent = std::make_shared<std::set<int64_t>>();
  return [fault, sent](int32_t bucket, int64_t version, const at::Tensor& slot) {
    if (bucket != 0 || version != fault.version) return;
    const bool resend = !sent->insert(version).second;
    if (resend && !fault.resends) return;
    slot.narrow(0, 0, 1).bitwise_xor_(0x5A);  // element 0: always data, never padding
    TIDAL_LOG(WARN) << "fault injection: corrupting broadcast of version " << version << " bucket 0"
                    << (resend ? " (resend)" : "");
  };
}

// Connect and collective errors kill the group; FailedPrecondition is the publisher's own refusal
// (a version with non-finite values was committed as not ok: the group is fine).
bool KillsGroup(const absl::Status& s) { return !s.ok() && !absl::IsFailedPrecondition(s); }

}  // namespace

BroadcastPublisher::BroadcastPublisher(BroadcastOptions options, bool publisher, Gather gather, LocalInstall local,
                                       Hooks hooks)
    : options_(std::move(options)), publisher_(publisher), gather_(std::move(gather)), local_(std::move(local)),
      hooks_(std::move(hooks)) {
  if (publisher_) {
    sender_ = std::make_unique<BroadcastSender>(options_.layout, at::Device(options_.device), options_.ring_depth);
    if (auto fault = CorruptBucketFaultFromEnv()) sender_->set_slot_hook(CorruptSlotHook(*fault));
  }
}

BroadcastPublisher::~BroadcastPublisher() = default;

absl::StatusOr<PublishStats> BroadcastPublisher::Publish(int64_t version) {
  return TimedPublish(version, gather_, [&](const NamedTensors& weights) -> absl::StatusOr<int64_t> {
    if (local_) TIDAL_RETURN_IF_ERROR(local_(weights, version));
    if (!publisher_ || epoch_.world_size < 2) return int64_t{0};
    BroadcastOutcome out = Broadcast(weights, version);
    if (!out.status.ok()) {
      TIDAL_LOG(WARN) << "weight broadcast of version " << version << " (epoch " << out.epoch << ") failed: "
                      << out.status << (out.group_dead ? "; the group is dropped" : "");
    }
    if (hooks_.done) hooks_.done(out);
    return out.bytes;
  });
}

BroadcastOutcome BroadcastPublisher::Broadcast(const NamedTensors& weights, int64_t version) {
  BroadcastOutcome out;
  out.epoch = epoch_.epoch;
  out.version = version;
  out.receivers = epoch_.world_size - 1;
  const BucketLayout& layout = options_.layout;
  std::vector<at::Tensor> sources;
  sources.reserve(layout.params.size());
  for (const ParamSpec& p : layout.params) {
    auto it = weights.find(p.name);
    if (it == weights.end()) {
      out.status = absl::InvalidArgumentError(absl::StrCat("weight broadcast: the trainer has no '", p.name, "'"));
      return out;
    }
    sources.push_back(it->second.contiguous());
  }
  if (!comm_ || comm_epoch_ != epoch_.epoch) {
    comm_.reset();  // the old epoch's group: its membership is gone
    const MonoTime t0 = MonoNow();
    GroupTicket ticket{epoch_.epoch, 0, epoch_.world_size, ""};
    auto comm = ConnectWeightGroup(ticket, options_.device, epoch_.group_base, hooks_.publish_id, options_.timeout);
    out.connect_seconds = SecondsSince(t0);
    if (!comm.ok()) {
      out.status = comm.status();
      out.group_dead = true;
      return out;
    }
    comm_ = std::move(*comm);
    comm_epoch_ = epoch_.epoch;
  }
  if (hooks_.starting) hooks_.starting(epoch_.epoch, version);
  const MonoTime t0 = MonoNow();
  out.status = sender_->Send(*comm_, sources, version);
  out.send_seconds = SecondsSince(t0);
  if (KillsGroup(out.status)) {
    comm_.reset();
    out.group_dead = true;
  }
  if (out.status.ok()) out.bytes = layout.staging_bytes;
  return out;
}

BroadcastSubscriber::BroadcastSubscriber(BroadcastOptions options)
    : options_(std::move(options)), receiver_(options_.layout, at::Device(options_.device), options_.ring_depth) {}

BroadcastSubscriber::~BroadcastSubscriber() = default;

absl::Status BroadcastSubscriber::Join(const GroupTicket& ticket) {
  if (receiver_.in_flight()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight broadcast: version %d is still arriving; cannot join epoch %d", in_flight_version_, ticket.epoch));
  }
  comm_.reset();
  auto refuse = [](int64_t, const std::string&) {
    return absl::InternalError("weight broadcast: a receiver cannot hand out the group's key");
  };
  TIDAL_ASSIGN_OR_RETURN(comm_, ConnectWeightGroup(ticket, options_.device, "", refuse, options_.timeout));
  comm_epoch_ = ticket.epoch;
  return absl::OkStatus();
}

absl::Status BroadcastSubscriber::Begin(int64_t epoch, int64_t version) {
  if (!comm_ || comm_epoch_ != epoch) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight broadcast: version %d comes in epoch %d, this receiver is %s", version, epoch,
        comm_ ? absl::StrCat("in epoch ", comm_epoch_) : std::string("not connected")));
  }
  TIDAL_RETURN_IF_ERROR(receiver_.Begin(*comm_, version));
  in_flight_version_ = version;
  return absl::OkStatus();
}

std::optional<absl::Status> BroadcastSubscriber::Poll() {
  std::optional<absl::Status> s = receiver_.Poll();
  if (s && KillsGroup(*s) && !absl::IsDataLoss(*s)) comm_.reset();  // a failed collective
  return s;
}

absl::StatusOr<NamedTensors> BroadcastSubscriber::StagedWeights() const {
  if (receiver_.received_version() < 0) {
    return absl::FailedPreconditionError("weight broadcast: no verified version to apply");
  }
  const BucketLayout& layout = receiver_.layout();
  const at::Tensor& staging = receiver_.staging();
  NamedTensors out;
  for (const BucketPlan& plan : layout.buckets) {
    for (const BucketSlot& s : plan.slots) {
      const ParamSpec& p = layout.params[s.param];
      out.emplace(p.name, staging.narrow(0, plan.byte_offset + s.offset * layout.element_bytes, s.numel * layout.element_bytes)
                              .view(at::kBFloat16)
                              .view(p.shape));
    }
  }
  return out;
}

}  // namespace tidal::weight_sync
