// The worker process (`tidal worker`): one per device slot, started by a launcher
// (scheduler/launcher.h: fork/exec here, srun on a Slurm node) or by an orchestrator that the
// controller does not control (Kubernetes, `launch: external`). It registers over the control plane, builds the roles its WorkerSetup asks for (an
// inference engine for rollout, a rank of the sharded trainer, or both), and serves the
// controller's messages until Shutdown (scheduler/protocol.h).
//
// Contract:
// - RunWorker() blocks on the calling thread, which is the only thread that touches the engine
//   and the trainer. The loop alternates: handle every queued control message, then (tagged
//   rollout, with work) one engine step. A train step, a checkpoint or an export runs inline;
//   heartbeats keep flowing meanwhile because the messaging layer sends them from its own I/O
//   thread.
// - Returns OK after Shutdown; an error when the controller disappears (heartbeats) or setup
//   fails. The controller's death also kills the worker through PR_SET_PDEATHSIG.
#pragma once

#include <string>

#include "core/status.h"

namespace tidal::scheduler {

struct WorkerOptions {
  std::string controller;   // the controller's ROUTER endpoint
  std::string device;       // "cpu:0", "cuda:1"
  int rank = -1;            // device index in the pool
  int heartbeat_ms = 1000;
  int heartbeat_miss = 10;
  std::string credentials;  // credentials file (scheduler/worker_auth.h); "" = none
  std::string token;        // registration token; "" = derive one from the credentials' secret
};

// Fills what the command line left empty from the environment: TIDAL_CONTROLLER, TIDAL_DEVICE,
// TIDAL_RANK (else JOB_COMPLETION_INDEX, a Kubernetes indexed Job's pod index),
// TIDAL_CREDENTIALS and TIDAL_WORKER_TOKEN (tokens travel only in the environment: a command line
// is world-readable). Errors name what is still missing.
absl::Status ResolveWorkerOptions(WorkerOptions& options);

// Setup connects over CURVE when the options carry credentials (mandatory for a non-loopback
// controller) and registers with the token (a derived one when only the run secret is held).
absl::Status RunWorker(const WorkerOptions& options);

}  // namespace tidal::scheduler
