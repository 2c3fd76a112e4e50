// A worker process's metrics: the one home of their names, help and buckets. They live in the
// process registry (core/metrics.h ProcessRegistry()); the worker ships snapshots to the
// controller (protocol.h WorkerMetrics), which labels them device/role/run on its /metrics.
//
// Contract: called from the worker thread (the OpenAI endpoint counts its requests itself, from
// its HTTP threads: prometheus-cpp metrics are thread-safe). Counters are cumulative for the
// process's life; a restarted worker starts again from zero (Prometheus' rate() handles resets).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace tidal::scheduler {

// One engine step: its wall time, what it ran, and the engine's cumulative counters after it.
struct EngineStepSample {
  double seconds = 0;
  int64_t running = 0, waiting = 0;        // sequences in the step / unfinished but not in it
  int64_t prefill_tokens = 0, decode_tokens = 0;
  int64_t kv_blocks_total = 0, kv_blocks_free = 0;
  int64_t preemptions = 0;                 // cumulative (EngineStats)
  int64_t prefix_queried_tokens = 0, prefix_hit_tokens = 0;  // cumulative
  int64_t generated_tokens = 0;            // cumulative
};
void RecordEngineStep(const EngineStepSample& s);
// A new engine (weights installed for the first time) restarts the cumulative counters.
void ResetEngineBaseline();

// An environment call (`call`: "score", "reset") and whether it failed.
void RecordEnvCall(const std::string& call, double seconds, bool ok);

// Weight sync on this worker: `phase` is gather | send (train rank 0) | apply (engine).
void RecordWeightSync(const std::string& phase, double seconds);
// `direction`: sent (train rank 0 -> controller) | received (controller -> engine).
void RecordWeightBytes(const std::string& direction, double bytes);
void RecordWeightRejected();

// Train rank: one step's wall time by phase (compute | publish | sft), its tokens, and (from the
// rank that reports them) the step's statistics (TrainStepDone.stats) as summaries.
void RecordTrainPhase(const std::string& phase, double seconds);
void RecordTrainStep(int64_t tokens, const nlohmann::json& stats, bool report_stats);

// The snapshot to send: process metrics refreshed, then ProcessRegistry() as JSON.
nlohmann::json WorkerMetricsSnapshot();

}  // namespace tidal::scheduler
