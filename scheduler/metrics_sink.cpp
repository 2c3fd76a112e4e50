#include "scheduler/metrics_sink.h"

#include "absl/strings/str_cat.h"
#include "core/logging.h"

namespace tidal::scheduler {
namespace {

// Help of every metric the controller sets (workers' metrics carry their own help).
const std::string& Help(const std::string& name) {
  static const std::map<std::string, std::string> kHelp = {
      {"tidal_steps_total", "RL optimizer steps completed"},
      {"tidal_policy_version", "Newest policy version (trainer optimizer steps)"},
      {"tidal_reward_mean", "Mean reward of the last trained batch"},
      {"tidal_train_accuracy", "Exact-answer rate of the last trained batch"},
      {"tidal_eval_accuracy", "Accuracy of the newest evaluation pass on the held-out split"},
      {"tidal_staleness_mean", "Mean (trained version - oldest token version) of the last batch"},
      {"tidal_rollout_tokens_total", "Response tokens generated for training"},
      {"tidal_train_tokens_total", "Response tokens trained on"},
      {"tidal_train_step_wall_seconds", "Wall time of an RL step as the controller sees it (dispatch to last reply)"},
      {"tidal_policy_dispatchable_groups", "Tag-policy input: groups the staleness gate allows to dispatch now"},
      {"tidal_policy_batch_ready", "Tag-policy input: 1 when the store holds a full train batch"},
      {"tidal_policy_train_running", "Tag-policy input: 1 while train work runs on the train group"},
      {"tidal_device_seconds_total", "Seconds per device, tag and state (busy|idle)"},
      {"tidal_device_tag_is_train", "1 when the device is tagged train now, 0 for rollout"},
      {"tidal_device_idle_fraction", "Idle share of the device's time so far"},
      {"tidal_device_inflight_groups", "Rollout groups held by the device"},
      {"tidal_tag_moves_total", "Tag moves per device, by the tag moved to"},
      {"tidal_pool_idle_fraction", "Idle share of the whole pool's time so far"},
      {"tidal_prompts", "Prompts now queued, in flight or stored (current counts)"},
      {"tidal_prompts_created_total", "Prompts created"},
      {"tidal_prompts_trained_total", "Prompts trained on"},
      {"tidal_prompts_requeued_total", "Requeue events (a dead worker's in-flight prompts)"},
      {"tidal_prompts_dropped_total", "Prompts dropped, by reason"},
      {"tidal_store_groups", "Finished groups waiting in the trajectory store"},
      {"tidal_weight_sync_versions_total", "Policy versions received from train rank 0"},
      {"tidal_weight_sync_version_bytes", "Bytes of one policy version"},
      {"tidal_weight_sync_relayed_bytes_total", "Weight bytes relayed to rollout workers"},
      {"tidal_weight_sync_relay_seconds", "First to last bucket of a version passing through the controller"},
      {"tidal_weight_sync_rejected_total", "Weight versions a rollout worker rejected (checksum, manifest)"},
      {"tidal_worker_restarts_total", "Worker processes restarted after a death"},
      {"tidal_worker_up", "1 while the device's worker is registered and ready"},
      {"tidal_worker_last_report_age_seconds", "Seconds since the device's worker last sent its metrics"},
      {"tidal_agent_sessions_total", "Agent endpoint sessions grouped for training"},
      {"tidal_agent_open_groups", "Agent session groups still waiting for members"},
  };
  static const std::string kUnknown = "tidal controller metric (see docs/observability.md)";
  auto it = kHelp.find(name);
  return it != kHelp.end() ? it->second : kUnknown;
}

prometheus::Labels ToLabels(const MetricLabels& labels) {
  prometheus::Labels out;
  for (const auto& [k, v] : labels) out[k] = v;
  return out;
}

}  // namespace

MetricsSink::~MetricsSink() { server_.reset(); }  // stop serving before the registry goes

absl::StatusOr<std::unique_ptr<MetricsSink>> MetricsSink::Serve(const std::string& run, const std::string& bind,
                                                                int port, std::vector<HttpRoute> routes) {
  std::unique_ptr<MetricsSink> sink(new MetricsSink(run));
  MetricsServerOptions o;
  o.host = bind.empty() ? "127.0.0.1" : bind;
  o.port = port;
  o.routes = std::move(routes);
  MetricsSink* raw = sink.get();
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start([raw] { return raw->Render(); }, o);
  if (!server.ok()) {
    return absl::UnavailableError(absl::StrCat("metrics.port: ", server.status().message(),
                                               " (metrics.port=0 picks a free port; -1 turns the endpoint off)"));
  }
  sink->server_ = std::move(*server);
  return sink;
}

std::unique_ptr<MetricsSink> MetricsSink::Local(const std::string& run) {
  return std::unique_ptr<MetricsSink>(new MetricsSink(run));
}

void MetricsSink::Set(const std::string& name, const MetricLabels& labels, double value) {
  GaugeFamily(registry_, name, Help(name)).Add(ToLabels(labels)).Set(value);
}

void MetricsSink::Add(const std::string& name, const MetricLabels& labels, double delta) {
  if (delta > 0) CounterFamily(registry_, name, Help(name)).Add(ToLabels(labels)).Increment(delta);
}

void MetricsSink::SetTotal(const std::string& name, const MetricLabels& labels, double total) {
  prometheus::Counter& c = CounterFamily(registry_, name, Help(name)).Add(ToLabels(labels));
  if (total > c.Value()) c.Increment(total - c.Value());
}

void MetricsSink::Observe(const std::string& name, const MetricLabels& labels, double value) {
  HistogramFamily(registry_, name, Help(name)).Add(ToLabels(labels), BucketsForName(name)).Observe(value);
}

void MetricsSink::Summarize(const std::string& name, const MetricLabels& labels, double value) {
  SummaryFamily(registry_, name, Help(name)).Add(ToLabels(labels), DefaultQuantiles()).Observe(value);
}

absl::Status MetricsSink::Ingest(const std::string& device, const std::string& role, const nlohmann::json& families) {
  absl::StatusOr<std::vector<prometheus::MetricFamily>> f = FamiliesFromJson(families);
  if (!f.ok()) return absl::InvalidArgumentError(absl::StrCat("metrics from ", device, ": ", f.status().message()));
  std::lock_guard<std::mutex> lock(mu_);
  workers_[device] = {role, std::move(*f)};
  return absl::OkStatus();
}

std::string MetricsSink::Render() const {
  UpdateProcessMetrics();
  std::vector<prometheus::MetricFamily> all = registry_.Collect();
  std::vector<prometheus::MetricFamily> own = ProcessRegistry().Collect();
  all.insert(all.end(), own.begin(), own.end());
  AddLabels(&all, {{"run", run_}, {"role", "controller"}});
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [device, snapshot] : workers_) {
    std::vector<prometheus::MetricFamily> w = snapshot.second;
    AddLabels(&w, {{"run", run_}, {"role", snapshot.first}, {"device", device}});
    all.insert(all.end(), w.begin(), w.end());
  }
  auto [merged, dropped] = MergeFamilies(std::move(all));
  if (dropped > 0 && dropped_families_ == 0) {
    TIDAL_LOG(WARN) << "metrics: " << dropped << " families clash in type across processes; dropped";
  }
  dropped_families_ = dropped;
  return RenderText(merged);
}

}  // namespace tidal::scheduler
