// NCCL Communicator: CUDA tensors, one GPU per rank, with a watchdog.
//
// Contract:
// - Creation: every rank calls CreateNcclCommunicator with the same world size and an id
//   exchange that hands rank 0's ncclUniqueId to every rank (NcclIdViaCommunicator over an
//   existing group, e.g. the shm one; NcclIdViaFile for ranks that share a filesystem). The
//   communicator is created non-blocking; an init that does not finish within `timeout` is
//   aborted and returns kDeadlineExceeded.
// - Streams: collectives run on a private high-priority communication stream. Each call first
//   makes that stream wait for the caller's current CUDA stream (so inputs are ready), and
//   afterwards makes the current stream wait for the collective (AllGatherAsync instead returns a
//   CommWork whose Wait() adds that dependency, which is how FSDP prefetch overlaps). The host
//   never blocks except in Barrier(). Tensors are recorded on the communication stream so the
//   caching allocator does not reuse their memory early.
// - Errors: every NCCL and CUDA return code is checked (file:line in the message). A watchdog
//   thread polls each queued collective's completion event and the communicator's async error;
//   a collective still unfinished after `timeout`, or an async NCCL error, aborts the
//   communicator (ncclCommAbort) so the hang becomes an error: that call and every later call
//   return it. Rebuild the communicator to continue.
// - Driven by one thread (plus the internal watchdog). Built only with TIDAL_WITH_CUDA; otherwise
//   CreateNcclCommunicator returns kUnimplemented. No CUDA/NCCL header is included here.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/communicator.h"

namespace tidal {

struct NcclCommunicatorOptions {
  int rank = 0;
  int world_size = 1;
  int device = 0;                            // CUDA device index used by this rank
  absl::Duration timeout = absl::Minutes(10);  // init and per-collective watchdog limit
  std::string name = "nccl";                 // shows in error messages
  // Raw ncclUniqueId bytes every rank uses (e.g. handed out by the controller over the control
  // plane, see NewNcclUniqueId); when set, the exchange is not called and may be null.
  std::string unique_id;
};

// Given a buffer holding rank 0's unique id on rank 0 (and anything on other ranks), leaves the
// same bytes on every rank.
using NcclIdExchange = std::function<absl::Status(std::string& id_bytes)>;

// Broadcast from rank 0 over an existing group with the same ranks (CPU tensors).
NcclIdExchange NcclIdViaCommunicator(Communicator& bootstrap);
// Rank 0 writes `path` atomically (temp + rename); others poll for it until `timeout`.
// Use a fresh path per communicator (include a run id).
NcclIdExchange NcclIdViaFile(std::string path, int rank, absl::Duration timeout);

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const NcclCommunicatorOptions& options,
                                                                     const NcclIdExchange& exchange);

// A fresh ncclUniqueId (raw bytes). The calling process hosts NCCL's bootstrap root for it, so
// it must stay alive until every rank has created its communicator (the controller does).
absl::StatusOr<std::string> NewNcclUniqueId();
// Hex form for text channels (messages, files) and back.
std::string NcclIdToHex(const std::string& id);
absl::StatusOr<std::string> NcclIdFromHex(const std::string& hex);

// True when this build has the NCCL backend compiled in.
bool NcclAvailable();

}  // namespace tidal
