#include "core/clock.h"

#include <gtest/gtest.h>

#include <thread>

namespace tidal {
namespace {

TEST(ClockTest, MonotonicDurations) {
  const MonoTime t0 = MonoNow();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const MonoTime t1 = MonoNow();
  EXPECT_GE(SecondsBetween(t0, t1), 0.020);
  EXPECT_LT(SecondsBetween(t0, t1), 60.0);
  EXPECT_DOUBLE_EQ(SecondsBetween(t1, t0), -SecondsBetween(t0, t1));
  EXPECT_GE(SecondsSince(t0), SecondsBetween(t0, t1));
  EXPECT_DOUBLE_EQ(SecondsBetween(t0, t0 + std::chrono::milliseconds(1500)), 1.5);

  const double m0 = MonoMillis();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GE(MonoMillis() - m0, 5.0);
}

TEST(ClockTest, WallTimeIsUnixTime) {
  // 2020-01-01 and 2100-01-01 bracket any machine this runs on; both units agree.
  const double s = WallSeconds();
  const int64_t ms = WallMillis();
  EXPECT_GT(s, 1577836800.0);
  EXPECT_LT(s, 4102444800.0);
  EXPECT_NEAR(static_cast<double>(ms) / 1000.0, s, 5.0);
}

TEST(ClockTest, ProcessCpuSecondsCountsWork) {
  // Spin until 20 ms of CPU are used (a 10 s wall budget bounds it on a loaded machine); a
  // sleeping thread would not advance it.
  const double c0 = ProcessCpuSeconds();
  volatile uint64_t x = 0;
  const MonoTime t0 = MonoNow();
  while (ProcessCpuSeconds() - c0 < 0.02 && SecondsSince(t0) < 10.0) x = x + 1;
  EXPECT_GE(ProcessCpuSeconds() - c0, 0.02);
  const double c1 = ProcessCpuSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LT(ProcessCpuSeconds() - c1, 0.04);
}

}  // namespace
}  // namespace tidal
