#include "scheduler/device_pool.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

std::vector<DeviceSlot> Cpus(int n) {
  std::vector<DeviceSlot> s;
  for (int i = 0; i < n; ++i) s.push_back({DeviceKind::kCpu, i});
  return s;
}

TEST(DevicePoolTest, FirstDevicesAreTrainRanks) {
  DevicePool pool(Cpus(3), 1);
  EXPECT_EQ(pool.device(0).home, Tag::kTrain);
  EXPECT_EQ(pool.device(1).home, Tag::kRollout);
  EXPECT_EQ(pool.device(2).tag, Tag::kRollout);
  EXPECT_EQ(pool.CountTagged(Tag::kTrain), 1);
  EXPECT_EQ(pool.device(2).slot.Name(), "cpu:2");
}

TEST(DevicePoolTest, EverySecondLandsInOneBucket) {
  DevicePool pool(Cpus(2), 1);
  pool.Start(10.0);
  pool.SetBusy(1, true, 11.0);   // d1 idle-rollout 1 s
  pool.SetBusy(0, true, 12.0);   // d0 idle-train 2 s
  pool.SetTag(0, Tag::kRollout, 13.0);  // d0 busy-train 1 s
  pool.SetBusy(1, false, 14.0);  // d1 busy-rollout 3 s
  pool.Advance(16.0);            // d0 busy-rollout 3 s, d1 idle-rollout +2 s
  const DeviceTime& a = pool.device(0).time;
  EXPECT_DOUBLE_EQ(a.idle[int(Tag::kTrain)], 2.0);
  EXPECT_DOUBLE_EQ(a.busy[int(Tag::kTrain)], 1.0);
  EXPECT_DOUBLE_EQ(a.busy[int(Tag::kRollout)], 3.0);
  EXPECT_DOUBLE_EQ(a.Total(), 6.0);
  const DeviceTime& b = pool.device(1).time;
  EXPECT_DOUBLE_EQ(b.idle[int(Tag::kRollout)], 3.0);
  EXPECT_DOUBLE_EQ(b.busy[int(Tag::kRollout)], 3.0);
  EXPECT_DOUBLE_EQ(pool.Total().IdleFraction(), 5.0 / 12.0);
  EXPECT_EQ(pool.device(0).tag_moves, 1);
}

TEST(DevicePoolTest, TimeBeforeStartAndBackwardsIsIgnored) {
  DevicePool pool(Cpus(1), 0);
  pool.SetBusy(0, true, 5.0);
  pool.Start(10.0);
  pool.Advance(9.0);
  EXPECT_DOUBLE_EQ(pool.device(0).time.Total(), 0.0);
  pool.Advance(11.0);
  EXPECT_DOUBLE_EQ(pool.device(0).time.busy[0], 1.0);
}

TEST(DevicePoolTest, DeviceNames) {
  auto s = ParseDeviceName("cuda:3");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->kind, DeviceKind::kCuda);
  EXPECT_EQ(s->index, 3);
  EXPECT_FALSE(ParseDeviceName("tpu:0").ok());
  EXPECT_FALSE(ParseDeviceName("cpu:x").ok());
  DeviceSet set;
  set.kind = DeviceSet::Kind::kCuda;
  set.indices = {0, 2};
  auto slots = SlotsFromDeviceSet(set);
  ASSERT_EQ(slots.size(), 2u);
  EXPECT_EQ(slots[1].Name(), "cuda:2");
}

}  // namespace
}  // namespace tidal::scheduler
