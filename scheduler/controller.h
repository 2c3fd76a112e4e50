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
// Run directory layout:
//   recipe.yaml        the resolved recipe (every key)
//   logs/              controller.log, worker-N.log
//   metrics.jsonl      one JSON object per event (warmup, step, eval, summary)
//   checkpoints/step-N trainer checkpoints + controller_state.json (checkpoint.dir)
//   final/             the final policy in HF format (config.json + model.safetensors)
//   openai_endpoints.json  with openai.serve: {"endpoints": [{"device", "url"}]}, rewritten
//                      whenever a worker (re)starts
//   summary.json       the run summary
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/recipe.h"
#include "core/status.h"

namespace tidal::scheduler {

struct RunOptions {
  bool progress = true;       // print the progress line to stderr
  std::string worker_binary;  // default: this executable
};

struct DeviceSummary {
  std::string device;
  std::string home_tag;
  double busy_rollout_s = 0, busy_train_s = 0, idle_rollout_s = 0, idle_train_s = 0;
  double idle_fraction = 0;
  int64_t tag_moves = 0;
  int64_t restarts = 0;
};

struct RunSummary {
  std::string run_dir;
  std::string policy;
  int64_t steps = 0;
  double wall_seconds = 0;
  double warmup_seconds = 0;
  double rl_seconds = 0;
  double eval_accuracy_start = -1;  // greedy accuracy after the warm-up (-1: not measured)
  double eval_accuracy_end = -1;
  std::vector<DeviceSummary> devices;
  double idle_fraction = 0;     // whole pool, whole run
  double rl_idle_fraction = 0;  // whole pool, RL phase only (warm-up, evals and export excluded)
  int64_t prompts_created = 0, prompts_trained = 0, prompts_dropped = 0, prompts_requeued = 0;
  int64_t prompts_unaccounted = 0;
  std::map<std::string, int64_t> dropped_by_reason;
  int64_t weight_versions = 0;
  int64_t weight_bytes_relayed = 0;
  int64_t weight_rejected = 0;
  int64_t worker_restarts = 0;
  double rollout_tokens_per_s = 0;
  double train_tokens_per_s = 0;
  double mean_staleness = 0;
  double response_tokens_mean = 0, response_tokens_max = 0;  // RL completions (skew of the workload)
  int64_t agent_sessions = 0;       // agent endpoint sessions grouped for training
  int64_t agent_sessions_late = 0;  // reported after RL ended (not trained)
  bool stopped_early = false;

  nlohmann::json ToJson() const;
  std::string Format() const;  // the human-readable block printed at the end of a run
};

absl::StatusOr<RunSummary> RunController(const Recipe& recipe, const RunOptions& options);

// Async-signal-safe: asks a running controller to wind down.
void RequestStop();

}  // namespace tidal::scheduler
