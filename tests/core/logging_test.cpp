#include "core/logging.h"
#include "tests/core/temp_dir.h"

#include <gtest/gtest.h>
#include <ftw.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

namespace tidal {
namespace {

using testing_util::TempDir;

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { file_ = dir_.path() + "/rollout-1.log"; }
  void TearDown() override {
    ::unsetenv("TIDAL_LOG_LEVEL");
    (void)InitLogging(LogOptions{});  // back to stderr only, tag "tidal", level info
  }
  std::string ReadFile() {
    std::ifstream in(file_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  TempDir dir_;
  std::string file_;
};

TEST_F(LoggingTest, PrefixesEveryLineWithTimeLevelRoleAndRank) {
  ASSERT_TRUE(InitLogging({"rollout", 1, file_, LogLevel::kDebug}).ok());
  EXPECT_EQ(LogTag(), "rollout-1");
  TIDAL_LOG(DEBUG) << "d " << 1;
  TIDAL_LOG(INFO) << "bound tcp://127.0.0.1:" << 5555;
  TIDAL_LOG(WARN) << "slow step";
  TIDAL_LOG(ERROR) << "two\nlines";
  std::string text = ReadFile();
  std::regex line(R"(\[\d\d:\d\d:\d\d\.\d\d\d ([DIWE]) rollout-1 logging_test\.cpp:\d+\] (.*))");
  std::istringstream in(text);
  std::vector<std::string> levels, bodies;
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (std::regex_match(l, m, line)) {
      levels.push_back(m[1]);
      bodies.push_back(m[2]);
    } else {
      bodies.push_back("<continuation> " + l);
    }
  }
  EXPECT_EQ(levels, (std::vector<std::string>{"D", "I", "W", "E"})) << text;
  EXPECT_EQ(bodies[1], "bound tcp://127.0.0.1:5555");
  EXPECT_EQ(bodies.back(), "<continuation> lines");
}

// A retry loop failing 1000 times writes 3 lines, not 1000; the next window's first line says
// how many were left out. Lines that differ in more than their numbers, and INFO, are kept.
TEST_F(LoggingTest, RepeatedWarningsAreRateLimitedAndCounted) {
  ::setenv("TIDAL_LOG_REPEAT", "3/300", 1);
  ASSERT_TRUE(InitLogging({"controller", -1, file_, LogLevel::kInfo}).ok());
  ::unsetenv("TIDAL_LOG_REPEAT");
  // One call site, as in a retry loop (the limit is per call site and text up to numbers).
  auto reject = [](int version) { TIDAL_LOG(WARN) << "weight version " << version << " rejected"; };
  for (int i = 0; i < 1000; ++i) reject(i);
  for (int i = 0; i < 5; ++i) TIDAL_LOG(WARN) << "other " << (i % 2 ? "a" : "b");
  for (int i = 0; i < 20; ++i) TIDAL_LOG(INFO) << "step " << i;
  ::usleep(350 * 1000);
  reject(5000);
  const std::string text = ReadFile();
  auto count = [&](const std::string& s) {
    int n = 0;
    for (size_t p = text.find(s); p != std::string::npos; p = text.find(s, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("rejected"), 4) << text;
  EXPECT_EQ(count("weight version 5000 rejected [997 similar lines suppressed]"), 1) << text;
  EXPECT_EQ(count("other "), 5) << text;  // "other a" and "other b" are different lines, 3 each max
  EXPECT_EQ(count("step "), 20);
}

TEST_F(LoggingTest, RecordsBelowTheLevelAreSkippedWithoutEvaluation) {
  ASSERT_TRUE(InitLogging({"controller", -1, file_, LogLevel::kWarn}).ok());
  int evaluated = 0;
  auto touch = [&] { return ++evaluated; };
  TIDAL_LOG(INFO) << "hidden " << touch();
  TIDAL_LOG(WARN) << "shown " << touch();
  EXPECT_EQ(evaluated, 1);
  std::string text = ReadFile();
  EXPECT_EQ(text.find("hidden"), std::string::npos);
  EXPECT_NE(text.find(" W controller logging_test.cpp:"), std::string::npos) << text;
}

TEST_F(LoggingTest, LevelComesFromTheEnvironment) {
  ::setenv("TIDAL_LOG_LEVEL", "ERROR", 1);
  ASSERT_TRUE(InitLogging({"train", 0, file_, std::nullopt}).ok());
  EXPECT_EQ(MinLogLevel(), LogLevel::kError);
  ::setenv("TIDAL_LOG_LEVEL", "verbose", 1);
  absl::Status s = InitLogging({"train", 0, "", std::nullopt});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("TIDAL_LOG_LEVEL"), std::string::npos);
  EXPECT_EQ(MinLogLevel(), LogLevel::kInfo);  // falls back
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarn);
}

TEST_F(LoggingTest, UnopenableFileIsAnErrorNamingIt) {
  absl::Status s = InitLogging({"x", -1, "/proc/nope/x.log", LogLevel::kInfo});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("/proc/nope/x.log"), std::string::npos);
}

}  // namespace
}  // namespace tidal
