// core/metrics_server.h: the exposition over HTTP (checked by promtool), extra routes, slow
// clients, bind errors.
#include "core/metrics_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/metrics.h"
#include "tests/core/http_get.h"
#include "tests/core/temp_dir.h"

namespace tidal {
namespace {

using testing_util::HttpGet;
using testing_util::TempDir;

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs `promtool check metrics` on `text` and returns its exit code and output.
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

void Populate(prometheus::Registry& r) {
  CounterFamily(r, "tidal_train_steps_total", "Optimizer steps taken").Add({}).Increment(12);
  auto& tok = CounterFamily(r, "tidal_rollout_tokens_total", "Tokens generated per worker");
  tok.Add({{"worker", "rollout-0"}, {"recipe", "letter \"count\"\\grpo\n"}}).Increment(4096);
  tok.Add({{"worker", "rollout-1"}, {"recipe", "plain"}}).Increment(1024);
  GaugeFamily(r, "tidal_policy_version", "Newest policy version").Add({}).Set(3);
  auto& lat = HistogramFamily(r, "tidal_step_duration_seconds", "Train step wall time");
  for (double v : {0.002, 0.02, 0.2, 2.0, 200.0}) lat.Add({{"phase", "forward"}}, LatencyBuckets()).Observe(v);
  SummaryFamily(r, "tidal_train_loss", "Loss of the step").Add({}, DefaultQuantiles()).Observe(0.3);
}

TEST(MetricsServerTest, ServesPrometheusTextThatPromtoolAccepts) {
  prometheus::Registry registry;
  Populate(registry);
  auto render = [&] {
    auto families = registry.Collect();
    AddLabels(&families, {{"run", "test"}});
    return RenderText(families);
  };
  auto server = MetricsServer::Start(render);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->url(), "http://127.0.0.1:" + std::to_string((*server)->port()) + "/metrics");

  auto res = HttpGet((*server)->port(), "/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.headers["content-type"], kPrometheusContentType);
  EXPECT_NE(res.body.find("tidal_step_duration_seconds_bucket{phase=\"forward\",run=\"test\",le=\"+Inf\"} 5"),
            std::string::npos)
      << res.body;

  CommandResult check = PromtoolCheck(res.body);
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n--- scraped:\n" << res.body;
  EXPECT_EQ(check.output, "");  // no lint warnings either

  CounterFamily(registry, "tidal_train_steps_total", "Optimizer steps taken").Add({}).Increment();
  auto again = HttpGet((*server)->port(), "/metrics");
  ASSERT_TRUE(again);
  EXPECT_NE(again.body.find("tidal_train_steps_total{run=\"test\"} 13\n"), std::string::npos) << again.body;
  EXPECT_EQ(HttpGet((*server)->port(), "/nope").status, 404);
}

TEST(MetricsServerTest, PromtoolRejectsBrokenText) {
  // Guards the test above: the check really fails on malformed exposition text.
  CommandResult check = PromtoolCheck("# TYPE x_total counter\nx_total{a=\"unterminated} 1\n");
  EXPECT_NE(check.exit_code, 0) << check.output;
}

TEST(MetricsServerTest, ExtraRoutesAreServed) {
  MetricsServerOptions o;
  o.routes.push_back({"/", [] { return HttpReply{200, "text/html", "<html>hi</html>"}; }});
  o.routes.push_back({"/api/x.json", [] { return HttpReply{503, "application/json", "{}"}; }});
  auto server = MetricsServer::Start([] { return std::string(); }, o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto index = HttpGet((*server)->port(), "/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index.body, "<html>hi</html>");
  EXPECT_EQ(index.headers["content-type"], "text/html");
  EXPECT_EQ(HttpGet((*server)->port(), "/api/x.json").status, 503);
}

// Connections that send nothing (or half a request) must not keep a scrape from being answered:
// each holds a pool thread only until the I/O timeout.
TEST(MetricsServerTest, SlowClientsDoNotBlockScrapes) {
  MetricsServerOptions o;
  o.threads = 4;
  o.io_timeout_ms = 500;
  auto server = MetricsServer::Start([] { return std::string("tidal_up 1\n"); }, o);
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<int> slow;
  for (int i = 0; i < 12; ++i) {  // three times the pool
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>((*server)->port()));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const char* partial = "GET /metrics HTTP/1.1\r\nHost: x\r\n";  // never finished
    ASSERT_GT(write(fd, partial, strlen(partial)), 0);
    slow.push_back(fd);
  }
  auto res = HttpGet((*server)->port(), "/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res.body, "tidal_up 1\n");
  for (int fd : slow) close(fd);
}

TEST(MetricsServerTest, TakenPortIsAnError) {
  auto render = [] { return std::string(); };
  auto first = MetricsServer::Start(render);
  ASSERT_TRUE(first.ok()) << first.status();
  MetricsServerOptions o;
  o.port = (*first)->port();
  auto second = MetricsServer::Start(render, o);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  o.port = 70000;
  auto bad = MetricsServer::Start(render, o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MetricsServerTest, StartsAndStopsQuickly) {
  for (int i = 0; i < 5; ++i) {
    auto s = MetricsServer::Start([] { return std::string(); });
    ASSERT_TRUE(s.ok()) << s.status();
  }  // destructors must not hang
}

}  // namespace
}  // namespace tidal
