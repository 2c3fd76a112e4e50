#include "scheduler/run_telemetry.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/atomic_file.h"
#include "core/logging.h"

namespace tidal::scheduler {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Written whole and renamed into place: tools poll these files.
void WriteJsonFile(const fs::path& path, const json& j) {
  if (absl::Status s = WriteFileAtomic(path.string(), j.dump(2) + "\n"); !s.ok()) TIDAL_LOG(WARN) << s;
}

double Num(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunTelemetry>> RunTelemetry::Start(const TelemetryOptions& options) {
  std::unique_ptr<RunTelemetry> t(new RunTelemetry());
  t->options_ = options;
  const fs::path dir(options.run_dir);
  if (options.port >= 0) {
    TIDAL_ASSIGN_OR_RETURN(t->sink_, MetricsSink::Serve(options.run, options.bind, options.port,
                                                        DashboardRoutes(options.run_dir, t->live_), options.bearer_token));
    const std::string host = options.bind == "0.0.0.0" || options.bind.empty() ? "127.0.0.1" : options.bind;
    WriteJsonFile(dir / "metrics_endpoint.json",
                  {{"metrics", t->sink_->url()}, {"dashboard", t->sink_->base_url()}, {"port", t->sink_->port()}});
    json target = json::object();
    target["targets"] = json::array();
    target["targets"].push_back(absl::StrCat(host, ":", t->sink_->port()));
    target["labels"] = json::object();
    target["labels"]["tidal_run_dir"] = fs::absolute(dir).string();
    json targets = json::array();
    targets.push_back(std::move(target));
    WriteJsonFile(dir / "prometheus_targets.json", targets);
    // Prometheus globs only the last path element of a file_sd path, so `runs/*/x.json` cannot
    // find runs; every run also drops its list into one folder beside the run directories
    // (`runs/.prometheus/<run dir name>.json`), removed again when the run ends.
    fs::path abs = fs::absolute(dir).lexically_normal();
    if (!abs.has_filename()) abs = abs.parent_path();  // "runs/x/" names the same run as "runs/x"
    const fs::path sd_dir = abs.parent_path() / ".prometheus";
    std::error_code ec;
    fs::create_directories(sd_dir, ec);
    const fs::path shared = sd_dir / (abs.filename().string() + ".json");
    if (!ec) {
      WriteJsonFile(shared, targets);
      t->shared_targets_ = shared.string();
    } else {
      TIDAL_LOG(WARN) << "cannot create " << sd_dir.string() << " (" << ec.message()
                      << "): Prometheus finds this run only through " << (dir / "prometheus_targets.json").string();
    }
    TIDAL_LOG(INFO) << "metrics on " << t->sink_->url() << ", dashboard on " << t->sink_->base_url();
  } else {
    t->sink_ = MetricsSink::Local(options.run);
  }
  RecordBuildInfo(ProcessRegistry());
  if (options.tensorboard) {
    TIDAL_ASSIGN_OR_RETURN(t->tb_, TensorBoardWriter::Open((dir / "tensorboard").string()));
  }
  const fs::path timeline = dir / "timeline.jsonl";
  if (!options.append) ::unlink(timeline.c_str());
  TIDAL_ASSIGN_OR_RETURN(t->timeline_, MetricsLog::Open(timeline.string()));
  return t;
}

RunTelemetry::~RunTelemetry() {
  if (!shared_targets_.empty()) ::unlink(shared_targets_.c_str());
}

void RunTelemetry::OnEvent(const json& ev) {
  if (!tb_ || !ev.is_object()) return;
  const std::string kind = ev.value("event", "");
  std::vector<std::pair<std::string, double>> v;
  int64_t step = 0;
  if (kind == "step") {
    step = ev.value("step", int64_t{0});
    v = {{"rl/reward", Num(ev, "reward")},
         {"rl/train_accuracy", Num(ev, "accuracy")},
         {"rl/staleness", Num(ev, "staleness")},
         {"weight_sync/publish_seconds", Num(ev, "publish_seconds")}};
    const double secs = Num(ev, "train_seconds");
    if (secs > 0) v.push_back({"throughput/train_tokens_per_s", Num(ev, "train_tokens") / secs});
    const double wall = Num(ev, "wall"), tokens = Num(ev, "rollout_tokens_total");
    if (last_step_wall_ >= 0 && wall > last_step_wall_) {
      v.push_back({"throughput/rollout_tokens_per_s", (tokens - last_rollout_tokens_) / (wall - last_step_wall_)});
    }
    last_step_wall_ = wall;
    last_rollout_tokens_ = tokens;
    if (auto it = ev.find("stats"); it != ev.end() && it->is_object()) {
      for (auto s = it->begin(); s != it->end(); ++s) {
        if (s.value().is_number()) v.push_back({"train/" + s.key(), s.value().get<double>()});
      }
    }
  } else if (kind == "eval") {
    step = ev.value("version", int64_t{0});
    v = {{"eval/accuracy", Num(ev, "accuracy")}};
  } else if (kind == "warmup") {
    step = ev.value("step", int64_t{0});
    v = {{"warmup/sft_loss", Num(ev, "loss")}};
  } else {
    return;
  }
  absl::Status s = tb_->AddScalars(v, step);
  if (!s.ok()) TIDAL_LOG(WARN) << s;
}

void RunTelemetry::OnWorkerMetrics(const std::string& device, const std::string& role, const json& families,
                                   double now) {
  absl::Status s = sink_->Ingest(device, role, families);
  if (!s.ok()) {
    TIDAL_LOG(WARN) << s;
    return;
  }
  Report& r = reports_[device];
  r.at = now;
  for (const json& f : families) {
    if (f.value("name", "") == "process_resident_memory_bytes" && !f["metrics"].empty()) {
      r.rss_bytes = Num(f["metrics"][0], "value");
    }
  }
}

void RunTelemetry::DeviceState(const std::string& device, const std::string& state, double now) {
  auto [it, inserted] = device_state_.emplace(device, state);
  if (!inserted && it->second == state) return;
  it->second = state;
  absl::Status s = timeline_->Write({{"t", now}, {"device", device}, {"state", state}});
  if (!s.ok()) TIDAL_LOG(WARN) << s;
}

void RunTelemetry::SetLive(json status, double now) {
  status["wall"] = now;
  if (auto it = status.find("workers"); it != status.end() && it->is_array()) {
    for (json& w : *it) {
      const auto r = reports_.find(w.value("device", ""));
      if (r == reports_.end()) continue;
      sink_->Set("tidal_worker_last_report_age_seconds", {{"device", r->first}}, now - r->second.at);
      w["report_age_s"] = now - r->second.at;
      w["rss_bytes"] = r->second.rss_bytes;
    }
  }
  live_->Set(std::move(status));
}

}  // namespace tidal::scheduler
