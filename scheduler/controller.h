// The controller: the one process of `tidal run` that owns the recipe, the device pool and its
// tags, the data flow (prompts -> rollout -> trajectory store -> train batches), weight-sync
// relaying, checkpoints, metrics and the run summary.
//
// Contract:
// - RunController() blocks for the whole run on the calling thread (the event loop). It creates
//   the run directory, binds the control plane, fork/execs one worker per device slot, drives the
//   run to its end, stops the workers and returns the summary (also written to
//   <run_dir>/summary.json). Only the calling thread touches controller state; the messaging
//   layer's I/O thread and the metrics HTTP thread see only their own copies.
// - RequestStop() (async-signal-safe; the CLI calls it from SIGINT/SIGTERM) makes the loop wind
//   down: in-flight work is aborted and accounted, workers get Shutdown, the summary is written.
// - Failures of a rollout worker are survived (its work is requeued, it is restarted and given
//   the current weights); a train rank's failure ends the run with an error, since the sharded
//   group cannot continue without it (resume from the last checkpoint).
//
// Parts (each its own file and unit test): fleet.h (worker table, supervision), dispatch.h
// (credits, the staleness gate), train_step.h (batch assembly, accounting), checkpoint_book.h,
// run_report.h (progress, metrics, summary), weight_sync/weight_relay.h (the weights cache).
//
// Run directory layout:
//   recipe.yaml        the resolved recipe (every key)
//   logs/              controller.log, worker-N.log
//   metrics.jsonl      one JSON object per event (warmup, step, eval, summary)
//   checkpoints/step-N trainer checkpoints + controller_state.json (checkpoint.dir)
//   final/             the final policy in HF format (weights + tokenizer files); written at
//                      the end of every run, a stopped one (SIGINT/SIGTERM) included, after a
//                      checkpoint of the last trained step (so `tidal run --resume` continues)
//   openai_endpoints.json  with openai.serve: {"endpoints": [{"device", "url"}]}, rewritten
//                      whenever a worker (re)starts
//   summary.json       the run summary
#pragma once

#include <string>

#include "core/recipe.h"
#include "core/status.h"
#include "scheduler/run_report.h"

namespace tidal::scheduler {

struct RunOptions {
  bool progress = true;       // print the progress line (stdout; logs go to stderr)
  // An existing run_dir that already holds a run (recipe.yaml) is refused unless the recipe
  // resumes (checkpoint.resume) or this is set, which deletes the old run first.
  bool overwrite = false;
  std::string worker_binary;  // default: this executable
  // Set by RunController itself: how many times this run was already restarted from a checkpoint
  // after its train group was lost (reported in the summary).
  int train_group_restarts = 0;
};

// A lost train rank (its process died, or it reported an error) breaks the sharded train group.
// RunController then restarts the run from its newest valid checkpoint, every worker included,
// up to control.budget.restarts times: the failed attempt accounts its open prompts (dropped with
// reason run_failed) and keeps its summary as summary.attempt-K.json; the next attempt resumes
// the controller state, the trainer shards and the prompt position of that checkpoint, so the
// prompts after it are generated again. Without a checkpoint (checkpoint.every = 0), or past the
// budget, the run stops with one error naming the cause and the key.
absl::StatusOr<RunSummary> RunController(const Recipe& recipe, const RunOptions& options);

// Whether `status` says the run ended because its train group was lost (see RunController).
bool IsTrainGroupLost(const absl::Status& status);

// Async-signal-safe: asks a running controller to wind down.
void RequestStop();

}  // namespace tidal::scheduler
