// core/tensorboard_writer.h: CRC-32C vectors, and PyPI's tensorboard reading our scalars back.
#include "core/tensorboard_writer.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/core/temp_dir.h"

namespace tidal {
namespace {

using testing_util::TempDir;

TEST(TensorBoardWriterTest, MaskedCrcFollowsTensorFlow) {
  // mask(crc) = rotate right 15 + 0xa282ead8; crc("123456789") = 0xE3069283 (the check value).
  const uint32_t crc = 0xE3069283u;
  EXPECT_EQ(MaskedCrc32c("123456789"), ((crc >> 15) | (crc << 17)) + 0xA282EAD8u);
  EXPECT_EQ(MaskedCrc32c(""), 0xA282EAD8u);
}

bool HaveTensorBoard() {
  std::string cmd = std::string(TIDAL_PYTHON) + " -c 'import tensorboard' > /dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

TEST(TensorBoardWriterTest, TensorBoardReadsTheScalarsBack) {
  if (!HaveTensorBoard()) GTEST_SKIP() << "no python with the tensorboard package at " << TIDAL_PYTHON;
  TempDir dir;
  const std::string logdir = dir.path() + "/tb";
  {
    auto w = TensorBoardWriter::Open(logdir);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_NE((*w)->path().find("/events.out.tfevents."), std::string::npos);
    for (int step = 1; step <= 5; ++step) {
      ASSERT_TRUE((*w)->AddScalars({{"rl/reward", 0.1 * step}, {"train/loss", 2.0 / step}}, step, 1.7e9 + step).ok());
    }
    ASSERT_TRUE((*w)->AddScalar("eval/accuracy", 5, 0.75).ok());
  }
  const std::string script = dir.path() + "/read.py";
  const std::string out = dir.path() + "/out.json";
  std::ofstream(script) << R"(
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
print(json.dumps({t: [[e.step, e.value, e.wall_time] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
)";
  std::string cmd = std::string(TIDAL_PYTHON) + " " + script + " " + logdir + " > " + out + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << ss.str();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  ASSERT_TRUE(j.is_object()) << ss.str();
  ASSERT_EQ(j["rl/reward"].size(), 5u) << ss.str();
  EXPECT_EQ(j["rl/reward"][2][0], 3);
  EXPECT_NEAR(j["rl/reward"][2][1].get<double>(), 0.3, 1e-6);
  EXPECT_NEAR(j["rl/reward"][2][2].get<double>(), 1.7e9 + 3, 1e-3);
  EXPECT_NEAR(j["train/loss"][4][1].get<double>(), 0.4, 1e-6);
  ASSERT_EQ(j["eval/accuracy"].size(), 1u);
  EXPECT_NEAR(j["eval/accuracy"][0][1].get<double>(), 0.75, 1e-6);
}

TEST(TensorBoardWriterTest, UnwritableDirectoryIsAnError) {
  auto w = TensorBoardWriter::Open("/proc/nope/tb");
  EXPECT_FALSE(w.ok());
}

}  // namespace
}  // namespace tidal
