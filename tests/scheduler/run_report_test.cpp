#include "scheduler/run_report.h"

#include <gtest/gtest.h>

#include "scheduler/metrics_sink.h"

namespace tidal::scheduler {
namespace {

TEST(RunReportTest, FormatsDurations) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(59.4), "59s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatDuration(1.0 / 0.0), "?");
  EXPECT_EQ(FormatDuration(0.0 / 0.0), "?");
}

TEST(RunReportTest, ProgressLineAndEta) {
  ProgressLine p;
  p.steps_done = 3;
  p.steps = 10;
  p.reward = 0.5;
  p.accuracy = 0.25;
  p.rollout_tokens_per_s = 1234.4;
  p.idle_fraction = 0.125;
  p.eta_seconds = EtaSeconds(30, 3, 7);
  EXPECT_EQ(p.Format(),
            "step 3/10 | reward 0.500 | acc 0.250 | eval - | rollout 1234 tok/s | train 0 tok/s | "
            "staleness 0.00 | idle 12% | ETA 1m10s");
  p.eval_accuracy = 0.9;
  EXPECT_NE(p.Format().find("eval 0.900"), std::string::npos);
  EXPECT_EQ(EtaSeconds(30, 0, 7), -1);
}

TEST(RunReportTest, DeviceSummariesAndIdleBetween) {
  DevicePool pool({{DeviceKind::kCpu, 0}, {DeviceKind::kCpu, 1}}, 1);
  pool.Start(0);
  pool.SetBusy(0, true, 1);
  DeviceTime start = pool.Total();
  pool.Advance(3);
  Fleet fleet;
  fleet.Resize(2);
  fleet[1].restarts = 2;
  std::vector<DeviceSummary> ds = DeviceSummaries(pool, fleet);
  ASSERT_EQ(ds.size(), 2u);
  EXPECT_EQ(ds[0].device, "cpu:0");
  EXPECT_EQ(ds[0].home_tag, "train");
  EXPECT_DOUBLE_EQ(ds[0].busy_train_s, 2);
  EXPECT_DOUBLE_EQ(ds[0].idle_train_s, 1);
  EXPECT_EQ(ds[1].restarts, 2);
  // Between start and now: d0 busy 2 s, d1 idle 2 s.
  EXPECT_DOUBLE_EQ(IdleFractionBetween(start, pool.Total()), 0.5);
}

TEST(RunReportTest, ExportsPoolFleetLedgerAndWeights) {
  DevicePool pool({{DeviceKind::kCpu, 0}}, 1);
  Fleet fleet;
  fleet.Resize(1);
  fleet[0].rl = {1, 2};
  fleet[0].restarts = 1;
  LedgerSummary l;
  l.queued = 4;
  l.trained = 9;
  auto sink = MetricsSink::Local("r");
  ExportPoolMetrics(*sink, pool, fleet, l, 3, {2, 2048, 1});
  std::string text = sink->Render();
  auto has = [&](const std::string& s) { return text.find(s) != std::string::npos; };
  const std::string c = "role=\"controller\",run=\"r\"";
  EXPECT_TRUE(has("tidal_device_inflight_groups{device=\"cpu:0\"," + c + "} 2")) << text;
  EXPECT_TRUE(has("tidal_prompts{" + c + ",state=\"queued\"} 4")) << text;
  // Running totals are counters (_total); tidal_prompts holds current counts only.
  EXPECT_TRUE(has("tidal_prompts_trained_total{" + c + "} 9")) << text;
  EXPECT_FALSE(has("state=\"trained\"")) << text;
  EXPECT_TRUE(has("tidal_store_groups{" + c + "} 3")) << text;
  EXPECT_TRUE(has("# TYPE tidal_weight_sync_relayed_bytes_total counter\ntidal_weight_sync_relayed_bytes_total{" + c + "} 2048")) << text;
  EXPECT_TRUE(has("tidal_weight_sync_rejected_total{" + c + "} 1")) << text;
  EXPECT_TRUE(has("tidal_worker_restarts_total{device=\"cpu:0\"," + c + "} 1")) << text;
  EXPECT_TRUE(has("# TYPE tidal_device_seconds_total counter")) << text;
  nlohmann::json w = WorkerStatus(pool, fleet);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0]["device"], "cpu:0");
  EXPECT_EQ(w[0]["restarts"], 1);
  EXPECT_EQ(w[0]["in_flight"], 2);
}

TEST(RunReportTest, SummaryJsonAndText) {
  RunSummary s;
  s.run_dir = "runs/x";
  s.policy = "colocated";
  s.steps = 5;
  s.eval_accuracy_start = 0.5;
  s.prompts_created = 10;
  s.prompts_trained = 8;
  s.prompts_dropped = 2;
  s.dropped_by_reason = {{"stale", 2}};
  s.weight_versions = 6;
  s.weight_bytes_relayed = 3'000'000;
  s.devices.push_back({.device = "cpu:0", .home_tag = "train", .restarts = 1});
  nlohmann::json j = s.ToJson();
  EXPECT_EQ(j["steps"], 5);
  EXPECT_EQ(j["prompts"]["dropped_by_reason"]["stale"], 2);
  EXPECT_EQ(j["weight_sync"]["versions"], 6);
  EXPECT_EQ(j["devices"][0]["restarts"], 1);
  EXPECT_EQ(j["agent"]["sessions"], 0);
  std::string text = s.Format();
  EXPECT_NE(text.find("== run summary (runs/x) =="), std::string::npos);
  EXPECT_NE(text.find("after warm-up 0.500 -> final -"), std::string::npos) << text;
  EXPECT_NE(text.find("dropped (stale): 2"), std::string::npos);
  EXPECT_NE(text.find("weight sync: 6 versions, 3.0 MB relayed"), std::string::npos);
  EXPECT_EQ(text.find("agent sessions"), std::string::npos);  // only when there were any
  // The broadcast transport reports its own line and fields; nothing relayed.
  s.weight_transport = "nccl";
  s.weight_bytes_relayed = 0;
  s.weight_bytes_broadcast = 2'500'000;
  s.weight_broadcast_failures = 1;
  s.weight_group_epochs = 3;
  j = s.ToJson();
  EXPECT_EQ(j["weight_sync"]["transport"], "nccl");
  EXPECT_EQ(j["weight_sync"]["bytes_relayed"], 0);
  EXPECT_EQ(j["weight_sync"]["bytes_broadcast"], 2'500'000);
  EXPECT_EQ(j["weight_sync"]["broadcast_failures"], 1);
  EXPECT_EQ(j["weight_sync"]["group_epochs"], 3);
  text = s.Format();
  EXPECT_NE(text.find("weight sync (broadcast): 6 versions, 2.5 MB broadcast, 1 failed broadcasts, 3 group epochs"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace tidal::scheduler
