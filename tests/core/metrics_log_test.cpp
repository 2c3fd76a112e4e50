#include "core/metrics_log.h"
#include "tests/core/temp_dir.h"

#include <gtest/gtest.h>
#include <ftw.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

namespace tidal {
namespace {

using testing_util::TempDir;

std::vector<nlohmann::json> ReadLines(const std::string& p) {
  std::ifstream in(p);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(MetricsLogTest, AppendsOneObjectPerLine) {
  TempDir dir;
  std::string path = dir.path() + "/run/logs/metrics.jsonl";  // parent directories are created
  {
    auto log = MetricsLog::Open(path);
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE((*log)->Write({{"step", 1}, {"loss", 0.5}}).ok());
    ASSERT_TRUE((*log)->Write({{"step", 2}, {"time", 123.0}, {"text", "multi\nline"}}).ok());
    auto bad = (*log)->Write(nlohmann::json::array({1, 2}));
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE((*log)->Sync().ok());
  }
  {
    auto log = MetricsLog::Open(path);  // reopening appends
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Write({{"step", 3}, {"bytes", std::string("\xff\xfe")}}).ok());
  }
  auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_GT(lines[0]["time"].get<double>(), 1.7e9);  // added: Unix seconds
  EXPECT_EQ(lines[1]["time"], 123.0);                 // kept
  EXPECT_EQ(lines[1]["text"], "multi\nline");
  EXPECT_EQ(lines[2]["step"], 3);
}

TEST(MetricsLogTest, ConcurrentWritersNeverInterleaveLines) {
  TempDir dir;
  std::string path = dir.path() + "/m.jsonl";
  auto log = MetricsLog::Open(path);
  ASSERT_TRUE(log.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        ASSERT_TRUE((*log)->Write({{"t", t}, {"i", i}, {"pad", std::string(200, 'a' + t)}}).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  auto lines = ReadLines(path);  // parse() throws on a torn line
  EXPECT_EQ(lines.size(), 2000u);
}

TEST(MetricsLogTest, UnwritablePathIsAnErrorNamingIt) {
  auto log = MetricsLog::Open("/proc/definitely/not/here.jsonl");
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("/proc/definitely/not/here.jsonl"), std::string::npos);
}

}  // namespace
}  // namespace tidal
