#include "core/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>

namespace tidal {
namespace {

TEST(MetricsTest, RendersCountersAndGaugesWithLabels) {
  MetricsRegistry r;
  auto& steps = r.GetCounter("tidal_train_steps_total", "Optimizer steps taken.");
  steps.Inc();
  steps.Inc(2);
  steps.Inc(-5);  // ignored: counters only go up
  auto& tokens = r.GetCounterFamily("tidal_rollout_tokens_total", "Tokens generated.", {"worker"});
  tokens.Labels({"rollout-1"}).Inc(100);
  tokens.Labels({"rollout-0"}).Inc(0.5);
  r.GetGauge("tidal_policy_version", "Newest policy version.\nSecond line \\ here.").Set(7);

  EXPECT_EQ(r.Render(),
            "# HELP tidal_policy_version Newest policy version.\\nSecond line \\\\ here.\n"
            "# TYPE tidal_policy_version gauge\n"
            "tidal_policy_version 7\n"
            "# HELP tidal_rollout_tokens_total Tokens generated.\n"
            "# TYPE tidal_rollout_tokens_total counter\n"
            "tidal_rollout_tokens_total{worker=\"rollout-0\"} 0.5\n"
            "tidal_rollout_tokens_total{worker=\"rollout-1\"} 100\n"
            "# HELP tidal_train_steps_total Optimizer steps taken.\n"
            "# TYPE tidal_train_steps_total counter\n"
            "tidal_train_steps_total 3\n");
}

TEST(MetricsTest, EscapesLabelValuesAndFormatsSpecialValues) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(1e-7), "1e-07");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
  EXPECT_EQ(std::stod(FormatMetricValue(1.0 / 3.0)), 1.0 / 3.0);  // round-trips

  MetricsRegistry r;
  r.GetGaugeFamily("g", "A gauge.", {"path", "env"}).Labels({"C:\\tmp\n", "say \"hi\""}).Set(-1.5);
  EXPECT_NE(r.Render().find("g{path=\"C:\\\\tmp\\n\",env=\"say \\\"hi\\\"\"} -1.5\n"),
            std::string::npos)
      << r.Render();
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry r;
  auto& h = r.GetHistogramFamily("tidal_step_seconds", "Step time.", {"phase"}, {0.1, 1, 10})
                .Labels({"train"});
  for (double v : {0.05, 0.1, 0.5, 2.0, 20.0, 30.0}) h.Observe(v);
  auto snap = h.snapshot();
  EXPECT_EQ(snap.cumulative, (std::vector<uint64_t>{2, 3, 4, 6}));  // 0.1 is "le 0.1"
  EXPECT_EQ(snap.count, 6u);
  EXPECT_DOUBLE_EQ(snap.sum, 52.65);
  EXPECT_EQ(r.Render(),
            "# HELP tidal_step_seconds Step time.\n"
            "# TYPE tidal_step_seconds histogram\n"
            "tidal_step_seconds_bucket{phase=\"train\",le=\"0.1\"} 2\n"
            "tidal_step_seconds_bucket{phase=\"train\",le=\"1\"} 3\n"
            "tidal_step_seconds_bucket{phase=\"train\",le=\"10\"} 4\n"
            "tidal_step_seconds_bucket{phase=\"train\",le=\"+Inf\"} 6\n"
            "tidal_step_seconds_sum{phase=\"train\"} 52.65\n"
            "tidal_step_seconds_count{phase=\"train\"} 6\n");
  EXPECT_EQ(Histogram::ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(Histogram::LinearBuckets(0, 5, 3), (std::vector<double>{0, 5, 10}));
}

TEST(MetricsTest, SameRegistrationSharesTheFamilyAndMisuseThrows) {
  MetricsRegistry r;
  auto& a = r.GetCounterFamily("x_total", "X.", {"w"});
  auto& b = r.GetCounterFamily("x_total", "X again.", {"w"});
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(&a.Labels({"1"}), &b.Labels({"1"}));
  EXPECT_THROW(r.GetGauge("x_total", "X."), std::invalid_argument);         // other type
  EXPECT_THROW(r.GetCounterFamily("x_total", "X.", {"v"}), std::invalid_argument);  // other labels
  EXPECT_THROW(a.Labels({"1", "2"}), std::invalid_argument);
  EXPECT_THROW(r.GetCounter("steps", "No suffix."), std::invalid_argument);
  EXPECT_THROW(r.GetGauge("bad-name", "Dash."), std::invalid_argument);
  EXPECT_THROW(r.GetGauge("g", ""), std::invalid_argument);
  EXPECT_THROW(r.GetGaugeFamily("g", "G.", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.GetGaugeFamily("g", "G.", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(r.GetHistogramFamily("h", "H.", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(r.GetHistogram("h", "H.", {2, 1}), std::invalid_argument);
  try {
    r.GetCounter("steps", "No suffix.");
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("metric steps"), std::string::npos) << e.what();
  }
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry r;
  auto& fam = r.GetCounterFamily("ops_total", "Ops.", {"t"});
  auto& h = r.GetHistogram("lat_seconds", "Latency.", {0.5});
  constexpr int kThreads = 4, kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto& mine = fam.Labels({std::to_string(t % 2)});
      for (int i = 0; i < kIters; ++i) {
        mine.Inc();
        h.Observe(i % 2 == 0 ? 0.25 : 1.0);
        if (i % 1000 == 0) (void)r.Render();  // scrapes race with updates
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(fam.Labels({"0"}).value() + fam.Labels({"1"}).value(), kThreads * kIters);
  auto snap = h.snapshot();
  EXPECT_EQ(snap.count, static_cast<uint64_t>(kThreads * kIters));
  EXPECT_EQ(snap.cumulative[0], static_cast<uint64_t>(kThreads * kIters / 2));
  EXPECT_DOUBLE_EQ(snap.sum, kThreads * kIters / 2 * 1.25);
}

}  // namespace
}  // namespace tidal
