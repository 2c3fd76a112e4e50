#include "scheduler/worker_metrics.h"

#include <map>

#include "core/metrics.h"

namespace tidal::scheduler {
namespace {

prometheus::Registry& R() { return ProcessRegistry(); }

constexpr char kSeqHelp[] = "Engine sequences by state (running in the last step, waiting)";
constexpr char kKvHelp[] = "KV-cache blocks by state (used, free)";

struct EngineMetrics {
  prometheus::Gauge& running = GaugeFamily(R(), "tidal_engine_sequences", kSeqHelp).Add({{"state", "running"}});
  prometheus::Gauge& waiting = GaugeFamily(R(), "tidal_engine_sequences", kSeqHelp).Add({{"state", "waiting"}});
  prometheus::Histogram& batch = HistogramFamily(R(), "tidal_engine_batch_tokens", "Tokens run through the model per engine step").Add({}, TokenBuckets());
  prometheus::Gauge& kv_used = GaugeFamily(R(), "tidal_engine_kv_blocks", kKvHelp).Add({{"state", "used"}});
  prometheus::Gauge& kv_free = GaugeFamily(R(), "tidal_engine_kv_blocks", kKvHelp).Add({{"state", "free"}});
  prometheus::Counter& preemptions = CounterFamily(R(), "tidal_engine_preemptions_total", "Sequences preempted (KV cache full)").Add({});
  prometheus::Counter& prefix_queried = CounterFamily(R(), "tidal_engine_prefix_queried_tokens_total", "Prompt tokens looked up in the prefix cache").Add({});
  prometheus::Counter& prefix_hit = CounterFamily(R(), "tidal_engine_prefix_hit_tokens_total", "Prompt tokens found in the prefix cache").Add({});
  prometheus::Counter& generated = CounterFamily(R(), "tidal_engine_generated_tokens_total", "Tokens sampled by the engine").Add({});
  prometheus::Family<prometheus::Histogram>& step = HistogramFamily(R(), "tidal_engine_step_seconds", "Engine step wall time by kind (decode: no prefill chunk in the step)");
  EngineStepSample base;  // cumulative values already counted
};

EngineMetrics& EngineM() {
  static auto* m = new EngineMetrics();
  return *m;
}

void AddDelta(prometheus::Counter& c, int64_t now, int64_t* seen) {
  if (now > *seen) c.Increment(static_cast<double>(now - *seen));
  *seen = now;
}

}  // namespace

void RecordEngineStep(const EngineStepSample& s) {
  EngineMetrics& m = EngineM();
  m.running.Set(static_cast<double>(s.running));
  m.waiting.Set(static_cast<double>(s.waiting));
  m.batch.Observe(static_cast<double>(s.prefill_tokens + s.decode_tokens));
  m.kv_used.Set(static_cast<double>(s.kv_blocks_total - s.kv_blocks_free));
  m.kv_free.Set(static_cast<double>(s.kv_blocks_free));
  AddDelta(m.preemptions, s.preemptions, &m.base.preemptions);
  AddDelta(m.prefix_queried, s.prefix_queried_tokens, &m.base.prefix_queried_tokens);
  AddDelta(m.prefix_hit, s.prefix_hit_tokens, &m.base.prefix_hit_tokens);
  AddDelta(m.generated, s.generated_tokens, &m.base.generated_tokens);
  static auto& decode = m.step.Add({{"kind", "decode"}}, LatencyBuckets());
  static auto& prefill = m.step.Add({{"kind", "prefill"}}, LatencyBuckets());
  (s.prefill_tokens > 0 ? prefill : decode).Observe(s.seconds);
}

void ResetEngineBaseline() { EngineM().base = EngineStepSample{}; }

void RecordEnvCall(const std::string& call, double seconds, bool ok) {
  static auto& latency = HistogramFamily(R(), "tidal_env_call_seconds", "Environment call latency by call");
  static auto& failures = CounterFamily(R(), "tidal_env_call_failures_total", "Environment calls that failed, by call");
  latency.Add({{"call", call}}, LatencyBuckets()).Observe(seconds);
  auto& f = failures.Add({{"call", call}});  // present at 0 so rate() works from the start
  if (!ok) f.Increment();
}

void RecordWeightSync(const std::string& phase, double seconds) {
  static auto& h = HistogramFamily(R(), "tidal_weight_sync_seconds", "Weight sync time per version by phase (gather, send, broadcast, connect, receive, apply)");
  h.Add({{"phase", phase}}, LatencyBuckets()).Observe(seconds);
}

void RecordWeightBytes(const std::string& direction, double bytes) {
  static auto& c = CounterFamily(R(), "tidal_weight_sync_bytes_total", "Weight bytes by direction (sent by train rank 0, received by an engine)");
  c.Add({{"direction", direction}}).Increment(bytes);
}

void RecordWeightRejected() {
  static auto& c = CounterFamily(R(), "tidal_weight_sync_rejected_versions_total", "Weight versions this engine rejected").Add({});
  c.Increment();
}

void RecordTrainPhase(const std::string& phase, double seconds) {
  static auto& h = HistogramFamily(R(), "tidal_train_step_seconds", "Train step wall time on this rank by phase (compute, publish, sft)");
  h.Add({{"phase", phase}}, LatencyBuckets()).Observe(seconds);
}

void RecordTrainStep(int64_t tokens, const nlohmann::json& stats, bool report_stats) {
  static auto& steps = CounterFamily(R(), "tidal_trainer_steps_total", "RL train steps this rank took").Add({});
  static auto& tok = CounterFamily(R(), "tidal_trainer_tokens_total", "Response tokens trained on (the whole batch, as every rank reports it)").Add({});
  steps.Increment();
  tok.Increment(static_cast<double>(tokens));
  if (!report_stats || !stats.is_object()) return;
  // One summary per statistic: every step lands in _sum/_count (a scrape misses none), and the
  // quantiles show its recent spread.
  static std::map<std::string, prometheus::Summary*> summaries;
  for (auto it = stats.begin(); it != stats.end(); ++it) {
    const std::string& key = it.key();
    if (!it.value().is_number() || key == "tokens" || key == "sequences" || key == "step_seconds") continue;
    auto s = summaries.find(key);
    if (s == summaries.end()) {
      std::string name = "tidal_train_" + key;
      auto& family = SummaryFamily(R(), name, "Trainer statistic '" + key + "' per step (TrainStepDone.stats)");
      s = summaries.emplace(key, &family.Add({}, DefaultQuantiles())).first;
    }
    s->second->Observe(it.value().get<double>());
  }
}

nlohmann::json WorkerMetricsSnapshot() {
  UpdateProcessMetrics();
  return FamiliesToJson(ProcessRegistry().Collect());
}

}  // namespace tidal::scheduler
