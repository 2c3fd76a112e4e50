// Observability end to end (label `slow`): one short CPU run with metrics.port: 0, checked from
// outside as a user would: the exposition (promtool, labels from every process), a real
// Prometheus server scraping it through tools/prometheus/prometheus.yml and answering every query
// of tools/grafana/tidal.json, headless Chromium rendering the live dashboard (screenshot kept in
// build/e2e/observability/dashboard.png), and after the run: TensorBoard reading its event files
// and `tidal dashboard RUN_DIR` rendering the finished run.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/remove_tree.h"
#include "tests/core/http_get.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using tidal::testing_util::HttpGet;
using tidal::testing_util::UrlEncode;

// The e2e tiny recipe with room for many steps: the test stops it (SIGINT) once it has checked
// the live endpoints.
constexpr char kRecipe[] = R"(
name: obs-e2e
seed: 3
model: {arch: qwen2, size: {hidden: 32, layers: 1, heads: 2, kv_heads: 1}, tokenizer: byte}
warmup: {sft: {steps: 4, lr: 3.0e-3, batch_size: 16}}
pool: {devices: "cpu:2", tags: {rollout: 1, train: 1}, policy: elastic}
rollout: {group_size: 4, max_new_tokens: 12, temperature: 1.0, max_staleness: 1, max_seqs: 32}
env: {plugin: "builtin:letter_count", args: {min_len: 3, max_len: 6}, eval_prompts: 16}
train: {lr: 1.0e-3, steps: 2000, prompts_per_step: 4}
weight_sync: {bucket_mb: 1}
metrics: {port: 0}
control: {heartbeat_ms: 200, heartbeat_miss: 15}
)";

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t CountLines(const fs::path& p, const std::string& needle) {
  std::ifstream in(p);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

// fork/exec with stdout+stderr to `out`.
pid_t Spawn(const std::vector<std::string>& args, const fs::path& out) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setpgid(0, 0);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int WaitExit(pid_t pid, double timeout_s) {
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

int Sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

bool HaveProgram(const std::string& name) { return Sh("command -v " + name + " > /dev/null 2>&1") == 0; }

// headless Chromium: the DOM after scripts ran (and a screenshot when `png` is given).
std::string Chromium(const std::string& url, const fs::path& dir, const std::string& png = "") {
  const std::string flags = " --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars"
                            " --user-data-dir=" + (dir / "chromium-profile").string() +
                            " --virtual-time-budget=8000 --window-size=1400,1900";
  const fs::path dom = dir / "dom.html";
  Sh("timeout 120 chromium" + flags + " --dump-dom '" + url + "' > " + dom.string() + " 2> " + (dir / "chromium.err").string());
  if (!png.empty()) {
    Sh("timeout 120 chromium" + flags + " --screenshot=" + png + " '" + url + "' > /dev/null 2>> " + (dir / "chromium.err").string());
  }
  return ReadFile(dom);
}

// data-points of every chart canvas in a dumped DOM.
std::map<std::string, int> ChartPoints(const std::string& dom) {
  std::map<std::string, int> out;
  std::regex re(R"re(<canvas id="(c_[a-z]+)"[^>]*data-points="(\d+)")re");
  for (std::sregex_iterator it(dom.begin(), dom.end(), re), end; it != end; ++it) {
    out[(*it)[1]] = std::stoi((*it)[2]);
  }
  return out;
}

class ObservabilityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // ctest runs each test of this suite in its own process, in parallel: one run directory each.
    root_ = fs::path(TIDAL_BINARY_DIR) / "e2e" / ("observability-" + std::to_string(::getpid()));
    (void)tidal::RemoveTree(root_.string());
    fs::create_directories(root_);
    run_dir_ = root_ / "run";
    std::ofstream(root_ / "recipe.yaml") << kRecipe;
    run_pid_ = Spawn({TIDAL_BIN, "run", (root_ / "recipe.yaml").string(), "run_dir=" + run_dir_.string()},
                     root_ / "run.out");
    // Wait for the endpoint file, a few RL steps, and a worker report after them.
    auto deadline = Clock::now() + std::chrono::seconds(240);
    while (Clock::now() < deadline) {
      int status = 0;
      if (waitpid(run_pid_, &status, WNOHANG) == run_pid_) {
        run_pid_ = -1;
        break;
      }
      if (fs::exists(run_dir_ / "metrics_endpoint.json") && CountLines(run_dir_ / "metrics.jsonl", "\"event\":\"step\"") >= 3) {
        json ep = json::parse(ReadFile(run_dir_ / "metrics_endpoint.json"), nullptr, false);
        port_ = ep.value("port", -1);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the workers' next snapshot
  }
  static void TearDownTestSuite() {
    if (run_pid_ > 0) {
      kill(run_pid_, SIGKILL);
      waitpid(run_pid_, nullptr, 0);
    }
  }
  void SetUp() override {
    ASSERT_GT(port_, 0) << "the run never reached 3 steps with an endpoint:\n" << ReadFile(root_ / "run.out");
  }

  static inline fs::path root_, run_dir_;
  static inline pid_t run_pid_ = -1;
  static inline int port_ = -1;
};

TEST_F(ObservabilityTest, ExpositionCarriesEveryProcessAndPassesPromtool) {
  auto res = HttpGet(port_, "/metrics");
  ASSERT_TRUE(res);
  const std::string& text = res.body;
  std::ofstream(root_ / "metrics.txt") << text;
  EXPECT_EQ(Sh("promtool check metrics < " + (root_ / "metrics.txt").string() + " > " +
               (root_ / "promtool.out").string() + " 2>&1"),
            0)
      << ReadFile(root_ / "promtool.out");
  EXPECT_EQ(ReadFile(root_ / "promtool.out"), "");  // no lint warnings either
  // Every sample has a run label.
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    EXPECT_NE(line.find("run=\"obs-e2e\""), std::string::npos) << line;
  }
  auto has = [&](const std::string& s) { return text.find(s) != std::string::npos; };
  EXPECT_TRUE(has("tidal_build_info{")) << text;
  EXPECT_TRUE(has("# TYPE tidal_steps_total counter")) << text;
  EXPECT_TRUE(has("# TYPE tidal_device_seconds_total counter")) << text;
  EXPECT_TRUE(has("# TYPE tidal_worker_restarts_total counter")) << text;
  EXPECT_TRUE(has("# TYPE tidal_prompts_requeued_total counter")) << text;
  EXPECT_TRUE(has("# TYPE tidal_weight_sync_relayed_bytes_total counter")) << text;
  // From the workers, labelled with their device and role (home tag): cpu:0 is the train rank
  // (it also hosts an engine under the elastic policy), cpu:1 the rollout worker.
  std::regex engine(R"re(tidal_engine_step_seconds_count\{device="cpu:1",kind="(decode|prefill)",role="rollout",run="obs-e2e"\} [1-9])re");
  EXPECT_TRUE(std::regex_search(text, engine)) << text;
  std::regex trainer(R"re(tidal_train_step_seconds_count\{device="cpu:0",phase="compute",role="train",run="obs-e2e"\} [1-9])re");
  EXPECT_TRUE(std::regex_search(text, trainer)) << text;
  EXPECT_TRUE(has("tidal_train_mismatch_kl_count{device=\"cpu:0\"")) << text;
  EXPECT_TRUE(has("tidal_engine_kv_blocks{device=\"cpu:1\"")) << text;
  EXPECT_TRUE(has("tidal_env_call_seconds_bucket{call=\"score\",device=\"cpu:1\"")) << text;
  EXPECT_TRUE(has("tidal_weight_sync_seconds_bucket{device=\"cpu:1\",phase=\"apply\"")) << text;
  EXPECT_TRUE(has("process_resident_memory_bytes{device=\"cpu:0\",role=\"train\"")) << text;
  EXPECT_TRUE(has("process_resident_memory_bytes{role=\"controller\"")) << text;
}

TEST_F(ObservabilityTest, PrometheusScrapesTheRunAndAnswersEveryGrafanaQuery) {
  if (!HaveProgram("prometheus")) GTEST_SKIP() << "Debian's prometheus is not installed (tools/install_deps.sh)";
  // The checked-in scrape config, pointed at this run and scraping every second.
  std::string config = ReadFile(fs::path(TIDAL_SOURCE_DIR) / "tools/prometheus/prometheus.yml");
  ASSERT_NE(config.find("../../runs/.prometheus/*.json"), std::string::npos) << config;
  config = std::regex_replace(config, std::regex(R"(\.\./\.\./runs/\.prometheus/\*\.json)"),
                              (root_ / ".prometheus" / "*.json").string());
  config = std::regex_replace(config, std::regex(R"((scrape_interval|refresh_interval): 5s)"), "$1: 1s");
  std::ofstream(root_ / "prometheus.yml") << config;
  const int prom_port = FreePort();
  pid_t prom = Spawn({"prometheus", "--config.file=" + (root_ / "prometheus.yml").string(),
                      "--storage.tsdb.path=" + (root_ / "tsdb").string(),
                      "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                     root_ / "prometheus.out");
  auto query = [&](const std::string& q) -> json {
    auto r = HttpGet(prom_port, "/api/v1/query?query=" + UrlEncode(q));
    if (!r) return json();
    return json::parse(r.body, nullptr, false);
  };
  // Scraped a few times (rates need two samples in their window).
  json up;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    up = query("count_over_time(tidal_build_info{job=\"tidal\",role=\"controller\",run=\"obs-e2e\"}[1m])");
    if (up.is_object() && !up["data"]["result"].empty() &&
        std::stod(up["data"]["result"][0]["value"][1].get<std::string>()) >= 4) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_TRUE(up.is_object() && !up["data"]["result"].empty())
      << up.dump() << "\n" << ReadFile(root_ / "prometheus.out");
  json steps = query("tidal_steps_total{run=\"obs-e2e\"}");
  ASSERT_FALSE(steps["data"]["result"].empty()) << steps.dump();
  EXPECT_GE(std::stod(steps["data"]["result"][0]["value"][1].get<std::string>()), 3);

  // Every Grafana query parses and runs; those whose metrics the run exposes return data.
  auto scraped = HttpGet(port_, "/metrics");
  ASSERT_TRUE(scraped);
  const std::string exposition = scraped.body;
  json dash = json::parse(ReadFile(fs::path(TIDAL_SOURCE_DIR) / "tools/grafana/tidal.json"));
  int checked = 0;
  std::set<std::string> absent;
  for (const json& panel : dash["panels"]) {
    for (const json& target : panel["targets"]) {
      std::string expr = target["expr"];
      expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval)"), "30s");
      expr = std::regex_replace(expr, std::regex(R"(\$run)"), "obs-e2e");
      bool exposed = true;
      std::regex name_re(R"(\b((tidal|process)_[a-z0-9_]+))");
      for (std::sregex_iterator it(expr.begin(), expr.end(), name_re), end; it != end; ++it) {
        std::string n = std::regex_replace((*it)[1].str(), std::regex("_(bucket|sum|count)$"), "");
        if (exposition.find("# TYPE " + n + " ") == std::string::npos) {
          exposed = false;
          absent.insert(n);
        }
      }
      json r;
      for (int attempt = 0; attempt < 20; ++attempt) {
        r = query(expr);
        if (r.is_object() && r["status"] == "success" && (!exposed || !r["data"]["result"].empty())) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      ASSERT_TRUE(r.is_object()) << panel["title"] << ": " << expr << ": no answer from Prometheus";
      EXPECT_EQ(r.value("status", ""), "success") << panel["title"] << ": " << expr << "\n" << r.dump();
      if (exposed) EXPECT_FALSE(r["data"]["result"].empty()) << panel["title"] << ": " << expr;
      ++checked;
    }
  }
  EXPECT_GE(checked, 20);
  // Only what this run cannot produce may be absent: no agent endpoint, maybe no dropped prompt.
  for (const std::string& n : absent) {
    EXPECT_TRUE(n == "tidal_openai_requests_total" || n == "tidal_prompts_dropped_total") << n;
  }
  kill(prom, SIGTERM);
  WaitExit(prom, 20);
}

TEST_F(ObservabilityTest, ChromiumRendersTheLiveDashboardWithData) {
  if (!HaveProgram("chromium")) GTEST_SKIP() << "Debian's chromium is not installed (tools/install_deps.sh)";
  const std::string url = "http://127.0.0.1:" + std::to_string(port_) + "/";
  const fs::path dir = root_ / "live";
  fs::create_directories(dir);
  std::string dom = Chromium(url, dir, (root_ / "dashboard.png").string());
  ASSERT_NE(dom.find("data-loaded=\"1\""), std::string::npos) << dom << ReadFile(dir / "chromium.err");
  EXPECT_NE(dom.find("<p class=\"note\" id=\"chartnote\"></p>"), std::string::npos) << dom;  // Chart.js loaded
  EXPECT_NE(dom.find("obs-e2e"), std::string::npos);
  auto points = ChartPoints(dom);
  for (const char* id : {"c_reward", "c_eval", "c_tps", "c_stale", "c_kl", "c_sync", "c_timeline"}) {
    EXPECT_GT(points[id], 0) << id << "\n" << dom;
  }
  EXPECT_NE(dom.find("<td>cpu:1</td><td>rollout</td><td class=\"ok\">ready</td>"), std::string::npos) << dom;
  EXPECT_GT(fs::file_size(root_ / "dashboard.png"), 10000u);
}

// Runs last (gtest keeps definition order): stops the run and checks what stays behind.
TEST_F(ObservabilityTest, StoppedRunLeavesTensorBoardEventsAndAStaticDashboard) {
  ASSERT_GT(run_pid_, 0);
  kill(run_pid_, SIGINT);  // winds down: aborts in-flight work, writes the summary
  WaitExit(run_pid_, 120);
  run_pid_ = -1;
  ASSERT_TRUE(fs::exists(run_dir_ / "summary.json")) << ReadFile(root_ / "run.out");
  const size_t steps = CountLines(run_dir_ / "metrics.jsonl", "\"event\":\"step\"");
  ASSERT_GE(steps, 3u);

  // TensorBoard (PyPI) reads the event files: one rl/reward point per step.
  if (Sh(std::string(TIDAL_PYTHON) + " -c 'import tensorboard' > /dev/null 2>&1") == 0) {
    std::ofstream(root_ / "tb.py") << R"(
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
)";
    ASSERT_EQ(Sh(std::string(TIDAL_PYTHON) + " " + (root_ / "tb.py").string() + " " + (run_dir_ / "tensorboard").string() +
                 " > " + (root_ / "tb.json").string() + " 2>&1"),
              0)
        << ReadFile(root_ / "tb.json");
    json tb = json::parse(ReadFile(root_ / "tb.json"));
    EXPECT_EQ(tb["rl/reward"].size(), steps) << tb.dump();
    EXPECT_FALSE(tb["train/mismatch_kl"].empty()) << tb.dump();
    EXPECT_FALSE(tb["eval/accuracy"].empty()) << tb.dump();
    EXPECT_FALSE(tb["warmup/sft_loss"].empty()) << tb.dump();
  } else {
    ADD_FAILURE() << "no python with the tensorboard package at " << TIDAL_PYTHON << " (tools/install_deps.sh)";
  }

  // `tidal dashboard RUN_DIR` renders the finished run.
  pid_t dash = Spawn({TIDAL_BIN, "dashboard", run_dir_.string(), "--port", "0"}, root_ / "dashboard.out");
  std::string url;
  for (int i = 0; i < 200 && url.empty(); ++i) {
    std::smatch m;
    std::string out = ReadFile(root_ / "dashboard.out");
    if (std::regex_search(out, m, std::regex(R"((http://127\.0\.0\.1:\d+/))"))) url = m[1];
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(url.empty()) << ReadFile(root_ / "dashboard.out");
  if (HaveProgram("chromium")) {
    const fs::path dir = root_ / "static";
    fs::create_directories(dir);
    std::string dom = Chromium(url, dir);
    auto points = ChartPoints(dom);
    EXPECT_EQ(points["c_reward"], static_cast<int>(2 * steps)) << dom;  // reward + train accuracy
    EXPECT_GT(points["c_timeline"], 0) << dom;
    EXPECT_NE(dom.find("finished"), std::string::npos) << dom;
  }
  kill(dash, SIGINT);
  EXPECT_EQ(WaitExit(dash, 20), 0) << ReadFile(root_ / "dashboard.out");
  // Not a run directory: a clear error.
  EXPECT_EQ(Sh(std::string(TIDAL_BIN) + " dashboard " + root_.string() + " > " + (root_ / "bad.out").string() + " 2>&1"), 2);
  EXPECT_NE(ReadFile(root_ / "bad.out").find("holds no metrics.jsonl"), std::string::npos) << ReadFile(root_ / "bad.out");
}

}  // namespace
