// Builds a worker's communicator in the weight-broadcast group from its GroupTicket
// (weight_sync/broadcast_membership.h). NCCL: one GPU per rank, its own communicator, never the
// trainers' gradient one.
//
// Contract: every member of an epoch calls ConnectBroadcastGroup with its ticket; rank 0 (the
// publisher) makes the NCCL unique id and hands it out through `publish_id` (to the controller,
// which puts it into the receivers' tickets), the others take it from their ticket. The call
// returns when every rank has joined, or DeadlineExceeded after `timeout` (a member that died
// meanwhile: the controller starts a new epoch and everyone reconnects). Call from the thread
// that will drive the communicator.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/communicator.h"
#include "weight_sync/broadcast_membership.h"

namespace tidal::weight_sync {

using PublishGroupId = std::function<absl::Status(int64_t epoch, const std::string& nccl_id)>;

absl::StatusOr<std::unique_ptr<Communicator>> ConnectBroadcastGroup(const GroupTicket& ticket, int device,
                                                                    const PublishGroupId& publish_id,
                                                                    absl::Duration timeout);

}  // namespace tidal::weight_sync
