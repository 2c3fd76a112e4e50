// The run dashboard: one HTML page that charts a run from its run directory (reward and held-out
// accuracy, rollout/train tokens per second, staleness, mismatch KL, weight-sync time, worker
// health, and a per-device timeline of rollout / train / switching / idle), served by the
// controller's HTTP server while the run goes, and by `tidal dashboard RUN_DIR` afterwards.
//
// Works offline: the page loads Chart.js from the same server, which reads it from Debian's
// libjs-chart.js (/usr/share/javascript/chart.js/chart.min.js); without it the page still lists
// the numbers and draws the timeline (it says what to install).
//
// Data (GET /api/run.json, built by DashboardData on each request):
//   {run, run_dir, events: metrics.jsonl records, timeline: timeline.jsonl records,
//    summary: summary.json or null, live: the controller's LiveState or null}
// The page polls it every 2 s until a summary appears. Each chart's canvas carries
// data-points="<n>" (points drawn) so a headless browser can check that the charts hold data.
//
// Contract: DashboardRoutes' handlers run on the HTTP server's threads; they only read files
// (each appended line is written whole, core/metrics_log.h) and the LiveState (mutex).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/metrics_server.h"

namespace tidal::scheduler {

// The controller publishes a small JSON status (workers, tags, progress) here; the dashboard reads it.
class LiveState {
 public:
  void Set(nlohmann::json status) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(status);
  }
  nlohmann::json Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }

 private:
  mutable std::mutex mu_;
  nlohmann::json status_;
};

inline constexpr char kChartJsPath[] = "/usr/share/javascript/chart.js/chart.min.js";

// `live` may be null (a finished run). The routes: "/", "/dashboard", "/chart.js", "/api/run.json".
std::vector<HttpRoute> DashboardRoutes(const std::string& run_dir, std::shared_ptr<const LiveState> live,
                                       const std::string& chart_js_path = kChartJsPath);

nlohmann::json DashboardData(const std::string& run_dir, const LiveState* live);

// The page itself (scheduler/dashboard_page.cpp).
const std::string& DashboardHtml();

}  // namespace tidal::scheduler
