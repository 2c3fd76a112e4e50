#include "weight_sync/broadcast_group.h"

#include "core/communicator_nccl.h"

namespace tidal::weight_sync {

absl::StatusOr<std::unique_ptr<Communicator>> ConnectBroadcastGroup(const GroupTicket& ticket, int device,
                                                                    const PublishGroupId& publish_id,
                                                                    absl::Duration timeout) {
  if (ticket.world_size < 2 || ticket.rank < 0 || ticket.rank >= ticket.world_size) {
    return absl::InvalidArgumentError(absl::StrFormat("weight broadcast group: bad ticket (rank %d of %d)",
                                                      ticket.rank, ticket.world_size));
  }
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

}  // namespace tidal::weight_sync
