#include "weight_sync/weight_relay.h"

#include <gtest/gtest.h>

#include "weight_sync/fault_injection.h"

namespace tidal::weight_sync {
namespace {

WeightBucket Bucket(int64_t version, int32_t index, int32_t count) {
  WeightBucket b;
  b.version = version;
  b.index = index;
  b.count = count;
  return b;
}

TEST(WeightRelayTest, CachesOnlyCompleteVersions) {
  WeightRelay relay;
  EXPECT_EQ(relay.latest_version(), -1);
  EXPECT_FALSE(relay.Accept(Bucket(1, 0, 2), Payload::FromString("ab")));
  EXPECT_EQ(relay.latest_version(), -1);
  EXPECT_TRUE(relay.Accept(Bucket(1, 1, 2), Payload::FromString("cd")));
  EXPECT_EQ(relay.latest_version(), 1);
  EXPECT_EQ(relay.versions(), 1);
  // A partial newer version does not replace the cached one.
  EXPECT_FALSE(relay.Accept(Bucket(2, 0, 2), Payload::FromString("ef")));
  EXPECT_EQ(relay.latest_version(), 1);
  // A new version discards a partial one.
  EXPECT_FALSE(relay.Accept(Bucket(3, 0, 2), Payload::FromString("gh")));
  EXPECT_TRUE(relay.Accept(Bucket(3, 1, 2), Payload::FromString("ij")));
  ASSERT_EQ(relay.Latest().size(), 2u);
  EXPECT_EQ(relay.Latest()[0].second.view(), "gh");
  EXPECT_EQ(relay.versions(), 2);
}

TEST(WeightRelayTest, CountsStreamedAndResentBytes) {
  WeightRelay relay;
  WeightBucket b = Bucket(0, 0, 1);
  Payload frame = Payload::FromString("12345");
  relay.Accept(b, frame);
  EXPECT_EQ(relay.Stream(b, frame, 1).view(), "12345");
  EXPECT_EQ(relay.Stream(b, frame, 2).view(), "12345");
  EXPECT_EQ(relay.bytes_relayed(), 10);
  std::vector<WeightRelay::Frame> again = relay.Resend(1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(relay.bytes_relayed(), 15);
}

TEST(WeightRelayTest, FaultHookCorruptsStreamedCopiesNotTheCache) {
  WeightRelay relay;
  relay.SetStreamHook(CorruptBucketHook(4));
  WeightBucket b0 = Bucket(4, 0, 2), b1 = Bucket(4, 1, 2);
  Payload f0 = Payload::FromString("abcd"), f1 = Payload::FromString("efgh");
  relay.Accept(b0, f0);
  EXPECT_NE(relay.Stream(b0, f0, 1).view(), "abcd");
  EXPECT_EQ(relay.Stream(b0, f0, 1).size(), 4u);
  relay.Accept(b1, f1);
  EXPECT_EQ(relay.Stream(b1, f1, 1).view(), "efgh");  // only bucket 0
  EXPECT_EQ(relay.Resend(1)[0].second.view(), "abcd");  // the cache is intact, resends pass
  WeightBucket other = Bucket(5, 0, 1);
  EXPECT_EQ(relay.Stream(other, f0, 1).view(), "abcd");  // only version 4
}

TEST(WeightRelayTest, AnAlwaysFaultHookCorruptsResendsToo) {
  WeightRelay relay;
  setenv("TIDAL_FAULT_CORRUPT_BUCKET", "4:always", 1);
  relay.SetStreamHook(FaultHookFromEnv());
  unsetenv("TIDAL_FAULT_CORRUPT_BUCKET");
  WeightBucket b0 = Bucket(4, 0, 1);
  Payload f0 = Payload::FromString("abcd");
  relay.Accept(b0, f0);
  EXPECT_NE(relay.Stream(b0, f0, 1).view(), "abcd");
  EXPECT_NE(relay.Resend(1)[0].second.view(), "abcd");
  EXPECT_EQ(relay.Latest()[0].second.view(), "abcd");  // the cache is intact
}

TEST(WeightRelayTest, NoFaultHookWithoutTheVariable) {
  unsetenv("TIDAL_FAULT_CORRUPT_BUCKET");
  EXPECT_FALSE(static_cast<bool>(FaultHookFromEnv()));
  setenv("TIDAL_FAULT_CORRUPT_BUCKET", "7", 1);
  EXPECT_TRUE(static_cast<bool>(FaultHookFromEnv()));
  unsetenv("TIDAL_FAULT_CORRUPT_BUCKET");
}

}  // namespace
}  // namespace tidal::weight_sync
