// The worker process (`tidal worker`, started by the controller with fork/exec): one per device
// slot. It registers over the control plane, builds the roles its WorkerSetup asks for (an
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
  std::string controller;  // the controller's ROUTER endpoint
  std::string device;      // "cpu:0", "cuda:1"
  int rank = -1;           // device index in the pool
  int heartbeat_ms = 1000;
  int heartbeat_miss = 10;
};

absl::Status RunWorker(const WorkerOptions& options);

}  // namespace tidal::scheduler
