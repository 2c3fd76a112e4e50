// What a run shows the outside world while it goes: the Prometheus endpoint with the dashboard
// (scheduler/metrics_sink.h, scheduler/dashboard.h), TensorBoard event files, the per-device
// timeline and the files that tell tools where the endpoint is.
//
// Contract: owned and called by the controller's event-loop thread (the HTTP threads only read
// the sink, the LiveState and the run directory's files). Start() binds the endpoint (port 0: any
// free port) and writes, in the run directory:
//   metrics_endpoint.json    {"metrics": url, "dashboard": url, "port": n}
//   prometheus_targets.json  a Prometheus file_sd target list; the same list also goes to
//                            <run_dir>/../.prometheus/<run dir name>.json, which
//                            tools/prometheus/prometheus.yml globs (Prometheus globs only the
//                            last path element) and which the destructor removes
//   timeline.jsonl           per-device state changes {t, device, state}: rollout | train |
//                            switching | idle | down (t: seconds since the controller started)
//   tensorboard/             events.out.tfevents.* (metrics.tensorboard)
// OnEvent() takes each metrics.jsonl record and mirrors its numbers into TensorBoard.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/metrics_log.h"
#include "core/status.h"
#include "core/tensorboard_writer.h"
#include "scheduler/dashboard.h"
#include "scheduler/metrics_sink.h"

namespace tidal::scheduler {

struct TelemetryOptions {
  std::string run;      // recipe name: the `run` label
  std::string run_dir;
  std::string bind = "127.0.0.1";
  int port = 0;         // 0: any free port; < 0: no endpoint (metrics kept in-process only)
  bool tensorboard = true;
  bool append = false;  // a resumed run appends to timeline.jsonl
  std::string bearer_token;  // non-empty: required of every HTTP request (off-loopback binds)
};

class RunTelemetry {
 public:
  static absl::StatusOr<std::unique_ptr<RunTelemetry>> Start(const TelemetryOptions& options);
  ~RunTelemetry();

  MetricsSink& metrics() { return *sink_; }
  // A metrics.jsonl record (step, eval, warmup, ...): its numbers go to TensorBoard.
  void OnEvent(const nlohmann::json& event);
  // A worker's WorkerMetrics; `now`: controller seconds.
  void OnWorkerMetrics(const std::string& device, const std::string& role, const nlohmann::json& families,
                       double now);
  // Appends a timeline record when the device's state differs from the last one recorded.
  void DeviceState(const std::string& device, const std::string& state, double now);
  // The dashboard's live status; `workers` entries get report_age_s and rss_bytes added here.
  void SetLive(nlohmann::json status, double now);

  std::string url() const { return sink_->url(); }
  std::string dashboard_url() const { return sink_->base_url(); }

 private:
  RunTelemetry() = default;

  TelemetryOptions options_;
  std::unique_ptr<MetricsSink> sink_;
  std::string shared_targets_;  // runs/.prometheus/<name>.json; "" when not written
  std::shared_ptr<LiveState> live_ = std::make_shared<LiveState>();
  std::unique_ptr<TensorBoardWriter> tb_;
  std::unique_ptr<MetricsLog> timeline_;
  std::map<std::string, std::string> device_state_;
  struct Report {
    double at = -1;
    double rss_bytes = 0;
  };
  std::map<std::string, Report> reports_;
  double last_step_wall_ = -1, last_rollout_tokens_ = 0;
};

}  // namespace tidal::scheduler
