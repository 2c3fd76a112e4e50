// The run report: the progress line, the metrics the controller exports for the pool, and the run
// summary (JSON for summary.json/metrics.jsonl, text for the end of `tidal run`).
//
// Contract: pure formatting and collection over the controller's state, called on its event-loop
// thread; nothing here keeps state between calls. Every exported metric name has a help line in
// scheduler/metrics_sink.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/device_pool.h"
#include "scheduler/fleet.h"
#include "scheduler/prompt_ledger.h"

namespace tidal::scheduler {

class MetricsSink;

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
  std::string weight_transport;  // weight_sync/transport.h TransportName
  int64_t weight_versions = 0;     // versions every engine was sent (relayed or broadcast)
  int64_t weight_bytes_relayed = 0;  // through the controller (zmq)
  int64_t weight_bytes_broadcast = 0;  // broadcast by train rank 0 (nccl), once per version
  int64_t weight_broadcast_failures = 0, weight_group_epochs = 0;
  int64_t weight_rejected = 0;
  int64_t worker_restarts = 0;
  int64_t train_group_restarts = 0;  // restarts of the whole run from a checkpoint (lost train rank)
  // The elastic train group (pool.elastic.resize): resizes taken, the group's size range and its
  // size at the end (all equal to the initial size when it never moved).
  int64_t train_group_resizes = 0;
  int train_group_min = 0, train_group_max = 0, train_group_final = 0;
  double train_group_resize_seconds = 0;  // total hand-off time (save + join), train ranks paused
  // Faults absorbed (docs/reliability.md): failed prompts (env errors, rewards outside
  // env.reward_range, refused prompts), train updates skipped for a non-finite loss or gradient,
  // Register attempts refused for a missing or wrong launch token.
  int64_t env_errors = 0, nonfinite_skipped = 0, registers_refused = 0;
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

// "?" for negative/NaN/inf; otherwise "42s", "3m05s", "1h02m".
std::string FormatDuration(double seconds);

struct ProgressLine {
  int64_t steps_done = 0, steps = 0;
  double reward = 0, accuracy = 0;
  double eval_accuracy = -1;  // -1: none yet
  double rollout_tokens_per_s = 0, train_tokens_per_s = 0;
  double staleness = 0, idle_fraction = 0;
  double eta_seconds = -1;    // -1: unknown
  std::string Format() const;
};

// Seconds left at the session's pace so far (-1 before the session's first step).
double EtaSeconds(double elapsed, int64_t session_steps, int64_t steps_left);

// Per device: busy/idle seconds by tag, tag moves and worker restarts.
std::vector<DeviceSummary> DeviceSummaries(const DevicePool& pool, const Fleet& fleet);

// Idle fraction of the pool between two DevicePool::Total() readings.
double IdleFractionBetween(const DeviceTime& start, const DeviceTime& end);

// Gauges of the pool, the fleet, the prompt ledger, the store and the weight relay.
struct WeightSyncCounts {
  int64_t versions = 0, bytes_relayed = 0, rejected = 0;
};
// The dashboard's worker table (scheduler/dashboard.h): per device its home tag, tag now, worker
// state, restarts, tag moves, idle share and in-flight work.
nlohmann::json WorkerStatus(const DevicePool& pool, const Fleet& fleet);

void ExportPoolMetrics(MetricsSink& sink, const DevicePool& pool, const Fleet& fleet,
                       const LedgerSummary& ledger, int store_groups, const WeightSyncCounts& weights);

}  // namespace tidal::scheduler
