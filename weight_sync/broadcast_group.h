// Builds a worker's communicator in the weight-broadcast group from its GroupTicket
// (weight_sync/broadcast_membership.h), never the trainers' gradient communicator.
//   CUDA: NCCL, one GPU per rank; the rendezvous key (GroupTicket::nccl_id) is the raw
//         ncclUniqueId that rank 0 makes.
//   CPU:  the POSIX-shm backend (core/communicator_shm.h), so the same protocol runs end to end
//         on CPU pools and in tests; the rendezvous key is the shm group name that rank 0 picks
//         (`<group_base>.e<epoch>`: unique per run and per epoch, so an old epoch's segment is
//         never joined).
//
// Contract: every member of an epoch calls ConnectBroadcastGroup / ConnectWeightGroup with its
// ticket; rank 0 (the publisher) makes the key and hands it out through `publish_id` (to the
// controller, which puts it into the receivers' tickets) before it waits for them, the others
// take it from their ticket. The call returns when every rank has joined, or DeadlineExceeded
// after `timeout` (a member that died meanwhile: the controller starts a new epoch and everyone
// reconnects). The communicator's collectives are bounded by the same timeout. Call from the
// thread that will drive the communicator.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/communicator.h"
#include "weight_sync/broadcast_membership.h"

namespace tidal::weight_sync {

using PublishGroupId = std::function<absl::Status(int64_t epoch, const std::string& nccl_id)>;

// NCCL on CUDA device `device`.
absl::StatusOr<std::unique_ptr<Communicator>> ConnectBroadcastGroup(const GroupTicket& ticket, int device,
                                                                    const PublishGroupId& publish_id,
                                                                    absl::Duration timeout);

// By the worker's device: "cuda:N" -> ConnectBroadcastGroup on N; "cpu" -> shm, rank 0 naming
// the group `<group_base>.e<epoch>` ([A-Za-z0-9_.-]).
absl::StatusOr<std::unique_ptr<Communicator>> ConnectWeightGroup(const GroupTicket& ticket, const std::string& device,
                                                                 const std::string& group_base,
                                                                 const PublishGroupId& publish_id,
                                                                 absl::Duration timeout);

}  // namespace tidal::weight_sync
