#include "scheduler/metrics_sink.h"

#include <map>

#include "core/metrics_server.h"

namespace tidal::scheduler {
namespace {

const std::string& Help(const std::string& name) {
  static const std::map<std::string, std::string> kHelp = {
      {"tidal_step", "RL optimizer steps completed"},
      {"tidal_policy_version", "Newest policy version (trainer optimizer steps)"},
      {"tidal_reward_mean", "Mean reward of the last trained batch"},
      {"tidal_train_accuracy", "Exact-answer rate of the last trained batch"},
      {"tidal_eval_accuracy", "Accuracy of the newest evaluation pass on the held-out split"},
      {"tidal_staleness_mean", "Mean (trained version - oldest token version) of the last batch"},
      {"tidal_rollout_tokens_total", "Response tokens generated for training"},
      {"tidal_train_tokens_total", "Response tokens trained on"},
      {"tidal_policy_dispatchable_groups", "Tag-policy input: groups the staleness gate allows to dispatch now"},
      {"tidal_policy_batch_ready", "Tag-policy input: 1 when the store holds a full train batch"},
      {"tidal_policy_train_running", "Tag-policy input: 1 while train work runs on the train group"},
      {"tidal_device_seconds", "Seconds per device, tag and state (busy|idle)"},
      {"tidal_device_tag_is_train", "1 when the device is tagged train now, 0 for rollout"},
      {"tidal_device_idle_fraction", "Idle share of the device's time so far"},
      {"tidal_device_inflight_groups", "Rollout groups held by the device"},
      {"tidal_pool_idle_fraction", "Idle share of the whole pool's time so far"},
      {"tidal_prompts", "Prompts by ledger state"},
      {"tidal_prompts_requeued", "Requeue events (a dead worker's in-flight prompts)"},
      {"tidal_prompts_dropped_total", "Prompts dropped, by reason"},
      {"tidal_store_groups", "Finished groups waiting in the trajectory store"},
      {"tidal_weight_sync_versions_total", "Policy versions received from train rank 0"},
      {"tidal_weight_sync_version_bytes", "Bytes of one policy version"},
      {"tidal_weight_sync_bytes_relayed", "Weight bytes relayed to rollout workers"},
      {"tidal_weight_sync_rejected", "Weight versions a rollout worker rejected (checksum, manifest)"},
      {"tidal_worker_restarts", "Worker processes restarted after a death"},
  };
  static std::map<std::string, std::string> derived;
  auto it = kHelp.find(name);
  if (it != kHelp.end()) return it->second;
  auto [d, inserted] = derived.emplace(name, "Trainer statistic " + name.substr(12) + " of the last step");
  return d->second;
}

std::pair<std::vector<std::string>, std::vector<std::string>> Split(const MetricLabels& labels) {
  std::vector<std::string> names, values;
  for (const auto& [k, v] : labels) {
    names.push_back(k);
    values.push_back(v);
  }
  return {names, values};
}

}  // namespace

MetricsSink::MetricsSink() = default;
MetricsSink::~MetricsSink() = default;

absl::StatusOr<std::unique_ptr<MetricsSink>> MetricsSink::Serve(const std::string& bind, int port,
                                                                const std::string& bearer_token) {
  std::unique_ptr<MetricsSink> sink(new MetricsSink());
  MetricsServerOptions o;
  o.host = bind.empty() ? "127.0.0.1" : bind;
  o.port = port;
  o.bearer_token = bearer_token;
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(sink->registry_, o);
  if (!server.ok()) {
    return absl::UnavailableError(absl::StrCat("metrics.port: ", server.status().message(),
                                               " (set metrics.port=0 to turn the endpoint off)"));
  }
  sink->server_ = std::move(*server);
  sink->url_ = sink->server_->url();
  return sink;
}

std::unique_ptr<MetricsSink> MetricsSink::Local() { return std::unique_ptr<MetricsSink>(new MetricsSink()); }

void MetricsSink::Set(const std::string& name, const MetricLabels& labels, double value) {
  auto [names, values] = Split(labels);
  registry_.GetGaugeFamily(name, Help(name), names).Labels(values).Set(value);
}

void MetricsSink::Add(const std::string& name, const MetricLabels& labels, double delta) {
  auto [names, values] = Split(labels);
  registry_.GetCounterFamily(name, Help(name), names).Labels(values).Inc(delta);
}

}  // namespace tidal::scheduler
