// core/metrics.h: tidal's conventions on prometheus-cpp, label merging and the control-plane codec.
#include "core/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>

namespace tidal {
namespace {

using prometheus::MetricFamily;
using prometheus::MetricType;

bool Has(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

TEST(MetricsTest, RendersCountersGaugesHistogramsAndSummariesWithLabels) {
  prometheus::Registry r;
  CounterFamily(r, "tidal_rollout_tokens_total", "Tokens generated").Add({{"worker", "w0"}}).Increment(4096);
  GaugeFamily(r, "tidal_policy_version", "Newest policy version").Add({}).Set(3);
  auto& h = HistogramFamily(r, "tidal_step_seconds", "Step time").Add({{"phase", "train"}}, LatencyBuckets());
  for (double v : {0.002, 0.02, 2.0, 200.0}) h.Observe(v);
  SummaryFamily(r, "tidal_train_loss", "Loss").Add({}, DefaultQuantiles()).Observe(0.5);
  std::string text = RenderText(r.Collect());
  EXPECT_TRUE(Has(text, "# TYPE tidal_rollout_tokens_total counter\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_rollout_tokens_total{worker=\"w0\"} 4096\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_policy_version 3\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_step_seconds_bucket{phase=\"train\",le=\"+Inf\"} 4\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_step_seconds_count{phase=\"train\"} 4\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_train_loss{quantile=\"0.5\"} 0.5\n")) << text;
}

TEST(MetricsTest, ConventionsAreEnforcedAndRegistrationIsGetOrCreate) {
  prometheus::Registry r;
  EXPECT_THROW(CounterFamily(r, "tidal_restarts", "x"), std::invalid_argument);
  EXPECT_THROW(GaugeFamily(r, "tidal_bytes_total", "x"), std::invalid_argument);
  EXPECT_THROW(HistogramFamily(r, "tidal_latency", "x"), std::invalid_argument);
  EXPECT_THROW(GaugeFamily(r, "tidal_x", ""), std::invalid_argument);
  auto& a = CounterFamily(r, "tidal_moves_total", "Moves");
  auto& b = CounterFamily(r, "tidal_moves_total", "Moves");
  EXPECT_EQ(&a, &b);
  a.Add({{"d", "0"}}).Increment();
  b.Add({{"d", "0"}}).Increment();
  EXPECT_EQ(a.Add({{"d", "0"}}).Value(), 2);
  // Same name, another type: prometheus-cpp refuses.
  EXPECT_ANY_THROW(prometheus::BuildGauge().Name("tidal_moves_total").Help("x").Register(r));
}

TEST(MetricsTest, AddLabelsAndMergeCombineProcesses) {
  prometheus::Registry w0, w1;
  CounterFamily(w0, "tidal_engine_preemptions_total", "p").Add({}).Increment(2);
  CounterFamily(w1, "tidal_engine_preemptions_total", "p").Add({}).Increment(5);
  GaugeFamily(w1, "tidal_engine_preemptions_other", "clash").Add({}).Set(1);
  auto f0 = w0.Collect();
  auto f1 = w1.Collect();
  AddLabels(&f0, {{"device", "cpu:0"}, {"run", "r"}});
  AddLabels(&f1, {{"device", "cpu:1"}, {"run", "r"}});
  std::vector<MetricFamily> all = f0;
  all.insert(all.end(), f1.begin(), f1.end());
  // A same-named family of another type is dropped, not rendered twice.
  MetricFamily bad;
  bad.name = "tidal_engine_preemptions_total";
  bad.help = "x";
  bad.type = MetricType::Gauge;
  bad.metric.resize(1);
  all.push_back(bad);
  auto [merged, dropped] = MergeFamilies(all);
  EXPECT_EQ(dropped, 1);
  ASSERT_EQ(merged.size(), 2u);
  std::string text = RenderText(merged);
  EXPECT_TRUE(Has(text, "tidal_engine_preemptions_total{device=\"cpu:0\",run=\"r\"} 2\n")) << text;
  EXPECT_TRUE(Has(text, "tidal_engine_preemptions_total{device=\"cpu:1\",run=\"r\"} 5\n")) << text;
  size_t first = text.find("# TYPE tidal_engine_preemptions_total");
  EXPECT_EQ(text.find("# TYPE tidal_engine_preemptions_total", first + 1), std::string::npos) << text;
  // A label the sample already has keeps its value.
  AddLabels(&f0, {{"device", "other"}});
  EXPECT_TRUE(Has(RenderText(f0), "device=\"cpu:0\""));
}

TEST(MetricsTest, JsonCodecRoundTripsEveryType) {
  prometheus::Registry r;
  CounterFamily(r, "tidal_a_total", "a").Add({{"k", "v\"q"}}).Increment(7);
  GaugeFamily(r, "tidal_b", "b").Add({}).Set(std::numeric_limits<double>::infinity());
  GaugeFamily(r, "tidal_c", "c").Add({}).Set(std::nan(""));
  auto& h = HistogramFamily(r, "tidal_d_bytes", "d").Add({}, ByteBuckets());
  h.Observe(1e6);
  h.Observe(10);
  SummaryFamily(r, "tidal_e_seconds", "e").Add({}, DefaultQuantiles()).Observe(1.5);
  auto families = r.Collect();
  nlohmann::json j = FamiliesToJson(families);
  // Through text, as the control plane carries it.
  auto back = FamiliesFromJson(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(RenderText(*back), RenderText(families));
  EXPECT_FALSE(FamiliesFromJson(nlohmann::json::object()).ok());
  EXPECT_FALSE(FamiliesFromJson(nlohmann::json::parse(R"([{"name":"x","type":"bogus","metrics":[]}])")).ok());
  EXPECT_FALSE(FamiliesFromJson(nlohmann::json::parse(R"([{"name":"x","type":"gauge"}])")).ok());
}

TEST(MetricsTest, BuildInfoAndProcessMetrics) {
  RecordBuildInfo(ProcessRegistry());
  UpdateProcessMetrics();
  std::string text = RenderText(ProcessRegistry().Collect());
  EXPECT_TRUE(Has(text, "tidal_build_info{cuda=")) << text;
  EXPECT_TRUE(Has(text, "process_resident_memory_bytes ")) << text;
  EXPECT_TRUE(Has(text, "process_cpu_seconds_total ")) << text;
  EXPECT_FALSE(Has(text, "process_resident_memory_bytes 0\n")) << text;
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  prometheus::Registry r;
  auto& c = CounterFamily(r, "tidal_n_total", "n").Add({});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) c.Increment();
    });
  }
  for (int i = 0; i < 50; ++i) (void)RenderText(r.Collect());
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.Value(), 40000);
}

}  // namespace
}  // namespace tidal
