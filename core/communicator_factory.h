// Picks the gradient communicator for a train group by the ranks' device: the POSIX-shm backend
// for CPU ranks, NCCL for CUDA ranks (world size 1 included, so a single GPU trainer takes the
// same code path as many).
//
// Contract:
// - Collective: every rank of the group calls CreateCommunicatorForDevice with the same group,
//   world size, device kind and (CUDA, world > 1) the same `nccl_id`.
// - CUDA: `nccl_id` holds raw ncclUniqueId bytes handed out by the controller over the control
//   plane (core/communicator_nccl.h NewNcclUniqueId); with world size 1 it may be empty (the rank
//   makes its own). NCCL_NVLS_ENABLE defaults to 0 (NVLink multicast off) unless the environment
//   sets it. The NCCL watchdog turns a collective that runs past `timeout` into an error.
// - Errors: absl::Status (kInvalidArgument for a bad spec, kUnimplemented for CUDA in a build
//   without it, the backend's own errors otherwise).
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/communicator.h"

namespace tidal {

struct CommunicatorSpec {
  std::string device = "cpu";  // "cpu" or "cuda:N" (the rank's own device)
  int rank = 0;
  int world_size = 1;
  std::string group;     // shm group name, unique per run (also names NCCL errors)
  std::string nccl_id;   // raw ncclUniqueId bytes (CUDA, world > 1)
  absl::Duration timeout = absl::Seconds(600);
};

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicatorForDevice(const CommunicatorSpec& spec);

}  // namespace tidal
