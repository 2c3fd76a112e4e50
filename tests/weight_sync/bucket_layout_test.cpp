#include "weight_sync/bucket_layout.h"

#include <gtest/gtest.h>

#include <random>

namespace tidal::weight_sync {
namespace {

std::vector<ParamSpec> Params() {
  return {{"embed", {100, 16}}, {"a", {16}}, {"b", {16, 16}}, {"big", {1000, 10}}, {"c", {7}}};
}

TEST(BucketLayoutTest, WholeTensorsBackToBackWithinTheSize) {
  auto layout = PlanBuckets(Params(), /*bucket_bytes=*/4096);
  ASSERT_TRUE(layout.ok()) << layout.status();
  // 2048 elements per bucket: embed + a + b (1872), big alone (10000 > 2048), c.
  ASSERT_EQ(layout->count(), 3);
  int64_t total = 0;
  int next_param = 0;
  int64_t off = 0;
  for (const auto& b : layout->buckets) {
    EXPECT_EQ(b.byte_offset, off);
    EXPECT_EQ(b.byte_offset % kBucketAlignBytes, 0);
    int64_t pos = 0;
    for (const auto& s : b.slots) {
      EXPECT_EQ(s.param, next_param++);  // ParamSpecs order, nothing skipped
      EXPECT_EQ(s.offset, pos);          // back to back
      pos += s.numel;
    }
    EXPECT_EQ(pos, b.numel);
    // Only a tensor larger than the bucket may exceed it, and then it travels alone.
    if (b.numel * 2 > 4096) EXPECT_EQ(b.slots.size(), 1u);
    total += b.numel;
    off += (b.WireBytes(2) + kBucketAlignBytes - 1) / kBucketAlignBytes * kBucketAlignBytes;
  }
  EXPECT_EQ(next_param, 5);
  EXPECT_EQ(total, layout->total_elements);
  EXPECT_EQ(off, layout->staging_bytes);
  EXPECT_EQ(layout->buckets[1].slots.size(), 1u);
  EXPECT_EQ(layout->buckets[1].numel, 10000);
  EXPECT_EQ(layout->BucketParams(0).size(), 3u);
  EXPECT_EQ(layout->BucketParams(0)[2].name, "b");
}

TEST(BucketLayoutTest, DeterministicAndRejectsBadInput) {
  auto a = PlanBuckets(Params(), 1000), b = PlanBuckets(Params(), 1000);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->count(), b->count());
  for (int i = 0; i < a->count(); ++i) EXPECT_EQ(a->buckets[i].numel, b->buckets[i].numel);
  EXPECT_EQ(PlanBuckets(Params(), 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanBuckets({}, 100).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanBuckets({{"x", {3, 0}}}, 100).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanBuckets({{"x", {int64_t{1} << 31}}}, 100).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BucketChecksumTest, PartialSumsAddUpAndPositionMatters) {
  std::vector<uint16_t> v(1000);
  std::mt19937 rng(1);
  for (auto& x : v) x = static_cast<uint16_t>(rng());
  uint64_t whole = BucketChecksum(v.data(), 1000);
  EXPECT_EQ(BucketChecksum(v.data(), 400) + BucketChecksum(v.data() + 400, 600, 400), whole);
  // Swapping two different elements moves the sum (the position is part of each term).
  std::swap(v[10], v[20]);
  ASSERT_NE(v[10], v[20]);
  EXPECT_NE(BucketChecksum(v.data(), 1000), whole);
}

TEST(BucketChecksumTest, EverySingleElementChangeIsCaught) {
  // The guarantee the receiver relies on: any one changed element changes the checksum.
  std::vector<uint16_t> v(257);
  std::mt19937 rng(2);
  for (auto& x : v) x = static_cast<uint16_t>(rng());
  const uint64_t base = BucketChecksum(v.data(), v.size());
  for (int trial = 0; trial < 20000; ++trial) {
    size_t i = rng() % v.size();
    uint16_t old = v[i];
    uint16_t now = static_cast<uint16_t>(old ^ (1u << (rng() % 16)) ^ (trial % 3 == 0 ? rng() : 0));
    if (now == old) continue;
    v[i] = now;
    ASSERT_NE(BucketChecksum(v.data(), v.size()), base) << "element " << i;
    v[i] = old;
  }
}

TEST(BucketTrailerTest, CheckTrailerNamesWhatDiffers) {
  auto layout = PlanBuckets(Params(), 4096);
  ASSERT_TRUE(layout.ok());
  const BucketPlan& p = layout->buckets[1];
  BucketTrailer t{42, 7, p.index, layout->count(), p.numel};
  EXPECT_TRUE(CheckTrailer(t, 42, 7, p, layout->count()).ok());
  auto bad_sum = CheckTrailer(t, 43, 7, p, layout->count());
  EXPECT_EQ(bad_sum.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(bad_sum.message().find("checksum mismatch"), std::string::npos);
  EXPECT_EQ(CheckTrailer(t, 42, 8, p, layout->count()).code(), absl::StatusCode::kDataLoss);
  t.index = 0;
  EXPECT_EQ(CheckTrailer(t, 42, 7, p, layout->count()).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace tidal::weight_sync
