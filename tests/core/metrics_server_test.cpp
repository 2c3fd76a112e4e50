#include "core/metrics_server.h"
#include "tests/core/temp_dir.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <ftw.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <fstream>
#include <sstream>

namespace tidal {
namespace {

using testing_util::TempDir;

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs promtool on `text` (via a file on stdin) and returns its exit code and output.
CommandResult PromtoolCheck(const std::string& text) {
  TempDir dir;
  std::string in = dir.path() + "/metrics.txt";
  std::string out = dir.path() + "/promtool.out";
  std::ofstream(in) << text;
  std::string cmd = "/usr/bin/promtool check metrics < '" + in + "' > '" + out + "' 2>&1";
  int rc = std::system(cmd.c_str());
  CommandResult res;
  res.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream o(out);
  std::stringstream ss;
  ss << o.rdbuf();
  res.output = ss.str();
  return res;
}

void Populate(MetricsRegistry& r) {
  r.GetCounter("tidal_train_steps_total", "Optimizer steps taken.").Inc(12);
  auto& tok = r.GetCounterFamily("tidal_rollout_tokens_total", "Tokens generated per worker.",
                                 {"worker", "recipe"});
  tok.Labels({"rollout-0", "letter \"count\"\\grpo\n"}).Inc(4096);
  tok.Labels({"rollout-1", "plain"}).Inc(1024);
  r.GetGauge("tidal_policy_version", "Newest policy version.").Set(3);
  r.GetGaugeFamily("tidal_logprob_mismatch", "Mean |rollout - trainer| logprob.", {"worker"})
      .Labels({"rollout-0"})
      .Set(std::nan(""));
  r.GetGauge("tidal_staleness_limit", "Configured staleness bound.")
      .Set(std::numeric_limits<double>::infinity());
  auto& lat = r.GetHistogramFamily("tidal_step_duration_seconds", "Train step wall time.",
                                   {"phase"}, Histogram::DefaultLatencyBuckets());
  for (double v : {0.002, 0.02, 0.2, 2.0, 200.0}) lat.Labels({"forward"}).Observe(v);
  lat.Labels({"backward"}).Observe(0.5);
  // A labeled family with no children yet renders only HELP/TYPE.
  r.GetCounterFamily("tidal_worker_deaths_total", "Workers declared dead.", {"worker"});
}

TEST(MetricsServerTest, ServesPrometheusTextThatPromtoolAccepts) {
  MetricsRegistry registry;
  Populate(registry);
  auto server = MetricsServer::Start(registry);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->url(), "http://127.0.0.1:" + std::to_string((*server)->port()) + "/metrics");

  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), kPrometheusContentType);
  EXPECT_EQ(res->body, registry.Render());
  EXPECT_NE(res->body.find("tidal_step_duration_seconds_bucket{phase=\"forward\",le=\"+Inf\"} 5"),
            std::string::npos);

  CommandResult check = PromtoolCheck(res->body);
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n--- scraped:\n" << res->body;
  EXPECT_EQ(check.output, "");  // no lint warnings either

  // Updates show up in the next scrape.
  registry.GetCounter("tidal_train_steps_total", "Optimizer steps taken.").Inc();
  auto again = client.Get("/metrics");
  ASSERT_TRUE(again);
  EXPECT_NE(again->body.find("tidal_train_steps_total 13\n"), std::string::npos);
  EXPECT_EQ(client.Get("/nope")->status, 404);
}

TEST(MetricsServerTest, PromtoolRejectsBrokenText) {
  // Guards the test above: the check really fails on malformed exposition text.
  CommandResult check = PromtoolCheck("# TYPE x_total counter\nx_total{a=\"unterminated} 1\n");
  EXPECT_NE(check.exit_code, 0) << check.output;
}

TEST(MetricsServerTest, TakenPortIsAnError) {
  MetricsRegistry registry;
  auto first = MetricsServer::Start(registry);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsServer::Start(registry, {"127.0.0.1", (*first)->port()});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  auto bad = MetricsServer::Start(registry, {"127.0.0.1", 70000});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MetricsServerTest, StartsAndStopsQuickly) {
  MetricsRegistry registry;
  for (int i = 0; i < 5; ++i) {
    auto s = MetricsServer::Start(registry);
    ASSERT_TRUE(s.ok()) << s.status();
  }  // destructors must not hang
}

}  // namespace
}  // namespace tidal
