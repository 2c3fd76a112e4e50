// scheduler/run_telemetry.h and scheduler/dashboard.h without a run: endpoint files, timeline,
// TensorBoard mirroring of events, the dashboard's data and routes.
#include "scheduler/run_telemetry.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/core/http_get.h"
#include "tests/core/temp_dir.h"

namespace tidal::scheduler {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing_util::TempDir;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(RunTelemetryTest, WritesEndpointFilesTimelineAndTensorBoard) {
  TempDir dir;
  TelemetryOptions o;
  o.run = "t1";
  o.run_dir = dir.path();
  o.port = 0;
  auto t = RunTelemetry::Start(o);
  ASSERT_TRUE(t.ok()) << t.status();
  json ep = json::parse(ReadFile(fs::path(dir.path()) / "metrics_endpoint.json"));
  EXPECT_GT(ep["port"].get<int>(), 0);
  EXPECT_EQ(ep["metrics"], (*t)->url());
  json sd = json::parse(ReadFile(fs::path(dir.path()) / "prometheus_targets.json"));
  EXPECT_EQ(sd[0]["targets"][0], "127.0.0.1:" + std::to_string(ep["port"].get<int>()));
  // The copy Prometheus globs (one folder for all runs), gone when the run ends.
  const fs::path shared = fs::path(dir.path()).parent_path() / ".prometheus" /
                          (fs::path(dir.path()).filename().string() + ".json");
  EXPECT_EQ(json::parse(ReadFile(shared)), sd);

  (*t)->DeviceState("cpu:0", "rollout", 0.5);
  (*t)->DeviceState("cpu:0", "rollout", 0.7);  // unchanged: not recorded
  (*t)->DeviceState("cpu:0", "idle", 1.0);
  (*t)->DeviceState("cpu:1", "train", 1.0);
  std::string timeline = ReadFile(fs::path(dir.path()) / "timeline.jsonl");
  EXPECT_EQ(std::count(timeline.begin(), timeline.end(), '\n'), 3) << timeline;

  (*t)->OnEvent({{"event", "step"}, {"step", 1}, {"reward", 0.5}, {"wall", 2.0}, {"rollout_tokens_total", 100},
                 {"train_tokens", 50}, {"train_seconds", 0.5}, {"stats", {{"mismatch_kl", 0.01}}}});
  (*t)->OnEvent({{"event", "worker_ready"}});  // nothing to chart
  bool tb = false;
  for (const auto& e : fs::directory_iterator(fs::path(dir.path()) / "tensorboard")) {
    tb |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0 && fs::file_size(e.path()) > 50;
  }
  EXPECT_TRUE(tb);

  // The dashboard's data endpoint, live state included.
  std::ofstream(fs::path(dir.path()) / "metrics.jsonl")
      << R"({"event":"step","step":1,"reward":0.5})" << "\n"
      << R"({"event":"summary","steps":1})" << "\n"
      << R"({"event":"st)";  // a line being written
  std::ofstream(fs::path(dir.path()) / "recipe.yaml") << "name: t1\nseed: 1\n";
  (*t)->OnWorkerMetrics("cpu:0", "rollout",
                        json::parse(R"([{"name":"process_resident_memory_bytes","help":"rss","type":"gauge",
                                         "metrics":[{"labels":{},"value":1048576}]}])"),
                        1.0);
  (*t)->SetLive({{"workers", {{{"device", "cpu:0"}, {"state", "ready"}}}}}, 3.0);
  const int port = ep["port"].get<int>();
  auto res = testing_util::HttpGet(port, "/api/run.json");
  ASSERT_TRUE(res);
  json data = json::parse(res.body);
  EXPECT_EQ(data["run"], "t1");
  ASSERT_EQ(data["events"].size(), 1u) << data.dump();  // the summary and the torn line left out
  EXPECT_EQ(data["timeline"].size(), 3u);
  EXPECT_EQ(data["live"]["workers"][0]["rss_bytes"], 1048576);
  EXPECT_DOUBLE_EQ(data["live"]["workers"][0]["report_age_s"].get<double>(), 2.0);
  auto page = testing_util::HttpGet(port, "/");
  ASSERT_TRUE(page);
  EXPECT_NE(page.body.find("<canvas id=\"c_timeline\""), std::string::npos);
  EXPECT_EQ(page.body.find("https://"), std::string::npos);  // nothing from a CDN
  auto metrics = testing_util::HttpGet(port, "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics.body.find("process_resident_memory_bytes{device=\"cpu:0\",role=\"rollout\",run=\"t1\"} 1048576"),
            std::string::npos)
      << metrics.body;
  t->reset();
  EXPECT_FALSE(fs::exists(shared)) << "the run's Prometheus target outlives it";
}

TEST(DashboardTest, ChartJsComesFromTheLocalPackageOrSaysWhatToInstall) {
  TempDir dir;
  auto find = [](const std::vector<HttpRoute>& routes, const std::string& path) {
    for (const auto& r : routes) {
      if (r.path == path) return r.handler();
    }
    return HttpReply{0, "", ""};
  };
  HttpReply missing = find(DashboardRoutes(dir.path(), nullptr, dir.path() + "/nope.js"), "/chart.js");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("libjs-chart.js"), std::string::npos);
  std::ofstream(dir.path() + "/chart.js") << "var Chart = 1;";
  HttpReply ok = find(DashboardRoutes(dir.path(), nullptr, dir.path() + "/chart.js"), "/chart.js");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "var Chart = 1;");
  json data = DashboardData(dir.path(), nullptr);  // an empty directory: empty series, no live state
  EXPECT_TRUE(data["events"].empty());
  EXPECT_TRUE(data["live"].is_null());
  EXPECT_TRUE(data["summary"].is_null());
}

}  // namespace
}  // namespace tidal::scheduler
