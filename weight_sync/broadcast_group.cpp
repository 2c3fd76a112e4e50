#include "weight_sync/broadcast_group.h"

#include "absl/strings/numbers.h"
#include "core/communicator_factory.h"
#include "core/communicator_nccl.h"

namespace tidal::weight_sync {
namespace {

absl::Status CheckTicket(const GroupTicket& ticket) {
  if (ticket.world_size < 2 || ticket.rank < 0 || ticket.rank >= ticket.world_size) {
    return absl::InvalidArgumentError(absl::StrFormat("weight broadcast group: bad ticket (rank %d of %d)",
                                                      ticket.rank, ticket.world_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> ConnectBroadcastGroup(const GroupTicket& ticket, int device,
                                                                    const PublishGroupId& publish_id,
                                                                    absl::Duration timeout) {
  TIDAL_RETURN_IF_ERROR(CheckTicket(ticket));
  NcclCommunicatorOptions o;
  o.rank = ticket.rank;
  o.world_size = ticket.world_size;
  o.device = device;
  o.timeout = timeout;
  o.name = absl::StrCat("weight-broadcast/epoch", ticket.epoch);
  NcclIdExchange exchange = [&](std::string& id) -> absl::Status {
    if (ticket.rank == 0) return publish_id(ticket.epoch, id);
    if (ticket.nccl_id.size() != id.size()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "weight broadcast group epoch %d: ticket carries a %d-byte NCCL id, expected %d", ticket.epoch,
          ticket.nccl_id.size(), id.size()));
    }
    id = ticket.nccl_id;
    return absl::OkStatus();
  };
  return CreateNcclCommunicator(o, exchange);
}

absl::StatusOr<std::unique_ptr<Communicator>> ConnectWeightGroup(const GroupTicket& ticket, const std::string& device,
                                                                 const std::string& group_base,
                                                                 const PublishGroupId& publish_id,
                                                                 absl::Duration timeout) {
  TIDAL_RETURN_IF_ERROR(CheckTicket(ticket));
  if (device.rfind("cuda:", 0) == 0) {
    int index = -1;
    if (!absl::SimpleAtoi(device.substr(5), &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat("weight broadcast group: device '", device, "'"));
    }
    // NVLink multicast stays off unless asked for (core/communicator_factory.h says why).
    setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
    return ConnectBroadcastGroup(ticket, index, publish_id, timeout);
  }
  if (device != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat("weight broadcast group: device '", device, "': expected cpu or cuda:N"));
  }
  CommunicatorSpec spec;
  spec.device = "cpu";
  spec.rank = ticket.rank;
  spec.world_size = ticket.world_size;
  spec.timeout = timeout;
  if (ticket.rank == 0) {
    if (group_base.empty()) return absl::InvalidArgumentError("weight broadcast group: empty group name");
    spec.group = absl::StrCat(group_base, ".e", ticket.epoch);
    // Handed out before the segment exists: receivers wait for it (up to `timeout`).
    TIDAL_RETURN_IF_ERROR(publish_id(ticket.epoch, spec.group));
  } else {
    if (ticket.nccl_id.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("weight broadcast group epoch %d: ticket without a group name",
                                                        ticket.epoch));
    }
    spec.group = ticket.nccl_id;
  }
  return CreateCommunicatorForDevice(spec);
}

}  // namespace tidal::weight_sync
