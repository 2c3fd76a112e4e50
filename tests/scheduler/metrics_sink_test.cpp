// scheduler/metrics_sink.h: controller metrics with conventions, worker snapshots merged with
// device/role/run labels, served over HTTP; port 0 gives concurrent sinks distinct ports.
#include "scheduler/metrics_sink.h"

#include <gtest/gtest.h>
#include "tests/core/http_get.h"

#include "core/metrics.h"

namespace tidal::scheduler {
namespace {

bool Has(const std::string& text, const std::string& s) { return text.find(s) != std::string::npos; }

TEST(MetricsSinkTest, CountersGaugesHistogramsCarryTheRunLabel) {
  auto sink = MetricsSink::Local("r1");
  sink->Add("tidal_rollout_tokens_total", {}, 10);
  sink->Add("tidal_rollout_tokens_total", {}, 5);
  sink->Add("tidal_rollout_tokens_total", {}, -3);  // counters never go down
  sink->SetTotal("tidal_device_seconds_total", {{"device", "cpu:0"}, {"tag", "train"}, {"state", "busy"}}, 2.5);
  sink->SetTotal("tidal_device_seconds_total", {{"device", "cpu:0"}, {"tag", "train"}, {"state", "busy"}}, 1.0);
  sink->SetTotal("tidal_device_seconds_total", {{"device", "cpu:0"}, {"tag", "train"}, {"state", "busy"}}, 4.0);
  sink->Set("tidal_policy_version", {}, 7);
  sink->Observe("tidal_train_step_wall_seconds", {}, 0.3);
  std::string text = sink->Render();
  EXPECT_TRUE(Has(text, "tidal_rollout_tokens_total{role=\"controller\",run=\"r1\"} 15\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_device_seconds_total{device=\"cpu:0\",role=\"controller\",run=\"r1\",state=\"busy\",tag=\"train\"} 4\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_policy_version{role=\"controller\",run=\"r1\"} 7\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_train_step_wall_seconds_count{role=\"controller\",run=\"r1\"} 1\n")) << text;
  EXPECT_THROW(sink->Set("tidal_restarts_total", {}, 1), std::invalid_argument);
  EXPECT_THROW(sink->Add("tidal_restarts", {}, 1), std::invalid_argument);
}

TEST(MetricsSinkTest, WorkerSnapshotsAreLabelledAndMergedWithTheControllers) {
  auto sink = MetricsSink::Local("r1");
  sink->Add("tidal_tag_moves_total", {{"device", "cpu:1"}, {"to", "rollout"}}, 2);
  for (int w = 0; w < 2; ++w) {
    prometheus::Registry r;
    CounterFamily(r, "tidal_engine_preemptions_total", "Sequences preempted").Add({}).Increment(w + 1);
    HistogramFamily(r, "tidal_env_call_seconds", "Env latency").Add({{"call", "score"}}, LatencyBuckets()).Observe(0.01);
    ASSERT_TRUE(sink->Ingest("cpu:" + std::to_string(w), w == 0 ? "rollout" : "train", FamiliesToJson(r.Collect())).ok());
  }
  // A newer snapshot replaces the old one.
  prometheus::Registry r;
  CounterFamily(r, "tidal_engine_preemptions_total", "Sequences preempted").Add({}).Increment(9);
  ASSERT_TRUE(sink->Ingest("cpu:1", "train", FamiliesToJson(r.Collect())).ok());
  EXPECT_FALSE(sink->Ingest("cpu:2", "train", nlohmann::json::object()).ok());

  std::string text = sink->Render();
  EXPECT_TRUE(Has(text, "tidal_engine_preemptions_total{device=\"cpu:0\",role=\"rollout\",run=\"r1\"} 1\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_engine_preemptions_total{device=\"cpu:1\",role=\"train\",run=\"r1\"} 9\n")) << text;
  EXPECT_FALSE(Has(text, "tidal_env_call_seconds_count{call=\"score\",device=\"cpu:1\"")) << text;
  EXPECT_TRUE(Has(text, "tidal_env_call_seconds_count{call=\"score\",device=\"cpu:0\",role=\"rollout\",run=\"r1\"} 1\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_tag_moves_total{device=\"cpu:1\",role=\"controller\",run=\"r1\",to=\"rollout\"} 2\n")) << text;
  EXPECT_TRUE(Has(text, "process_resident_memory_bytes{role=\"controller\",run=\"r1\"}")) << text;
  size_t first = text.find("# TYPE tidal_engine_preemptions_total counter");
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(text.find("# TYPE tidal_engine_preemptions_total", first + 1), std::string::npos) << text;
}

TEST(MetricsSinkTest, PortZeroServesEachRunOnItsOwnPort) {
  auto a = MetricsSink::Serve("a", "127.0.0.1", 0);
  auto b = MetricsSink::Serve("b", "127.0.0.1", 0);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE((*a)->port(), (*b)->port());
  (*a)->Set("tidal_policy_version", {}, 1);
  auto res = testing_util::HttpGet((*a)->port(), "/metrics");
  ASSERT_TRUE(res);
  EXPECT_TRUE(Has(res.body, "tidal_policy_version{role=\"controller\",run=\"a\"} 1\n")) << res.body;
  // A taken fixed port is a clear error naming the key.
  auto clash = MetricsSink::Serve("c", "127.0.0.1", (*a)->port());
  ASSERT_FALSE(clash.ok());
  EXPECT_TRUE(Has(std::string(clash.status().message()), "metrics.port")) << clash.status();
}

}  // namespace
}  // namespace tidal::scheduler
