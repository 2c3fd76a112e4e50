#include "weight_sync/bucket_ops.h"

#include <gtest/gtest.h>

#include <random>

namespace tidal::weight_sync {
namespace {

std::vector<ParamSpec> Specs() {
  return {{"embed", {50, 24}}, {"norm", {24}}, {"q", {24, 24}}, {"odd", {13}}, {"head", {60, 24}}, {"bias", {5}}};
}

struct Fixture {
  BucketLayout layout;
  std::vector<at::Tensor> sources, targets;
  explicit Fixture(int64_t bucket_bytes = 1200, int seed = 0) {
    layout = PlanBuckets(Specs(), bucket_bytes).value();
    at::manual_seed(seed);
    for (size_t p = 0; p < layout.params.size(); ++p) {
      // fp32 masters, one bf16 source (a trainer may keep some parameters in bf16)
      sources.push_back(at::randn(layout.params[p].shape, p == 3 ? at::kBFloat16 : at::kFloat));
      targets.push_back(at::zeros(layout.params[p].shape, at::kBFloat16));
    }
  }
  at::Tensor Staging() const { return at::zeros({layout.staging_bytes}, at::kByte); }
  at::Tensor Sums() const { return at::zeros({layout.count()}, at::kLong); }
};

void ExpectBitwise(const at::Tensor& a, const at::Tensor& b) {
  ASSERT_TRUE(at::equal(a.contiguous().view(at::kShort), b.contiguous().view(at::kShort)));
}

TEST(BucketOpsTest, PackVerifyApplyRoundTripsToTheEnginesDtype) {
  Fixture f;
  ASSERT_GE(f.layout.count(), 3);
  at::Tensor staging = f.Staging(), sums = f.Sums(), bad = at::zeros({1}, at::kInt);
  PackAll(f.layout, f.sources, staging, /*version=*/5, bad);
  EXPECT_EQ(NonFinite(bad), 0);
  ChecksumBuckets(f.layout, staging, 0, f.layout.count(), sums);
  ASSERT_TRUE(VerifyBuckets(f.layout, staging, 0, f.layout.count(), sums, 5).ok());
  // The trailer is stamped with the version: verifying as another version fails.
  EXPECT_EQ(VerifyBuckets(f.layout, staging, 0, f.layout.count(), sums, 6).code(), absl::StatusCode::kDataLoss);
  ApplyBuckets(f.layout, staging, 0, f.layout.count(), f.targets);
  for (size_t p = 0; p < f.sources.size(); ++p) ExpectBitwise(f.targets[p], f.sources[p].to(at::kBFloat16));
}

TEST(BucketOpsTest, OneBucketAtATimeMatchesTheWholeVersion) {
  Fixture f;
  at::Tensor whole = f.Staging(), piecewise = f.Staging();
  PackAll(f.layout, f.sources, whole, 1);
  for (int32_t b = 0; b < f.layout.count(); ++b) PackBucket(f.layout, b, f.sources, BucketView(f.layout, piecewise, b), 1);
  EXPECT_TRUE(at::equal(whole, piecewise));
}

TEST(BucketOpsTest, EveryCorruptedBucketIsCaught) {
  Fixture f;
  at::Tensor staging = f.Staging(), sums = f.Sums();
  PackAll(f.layout, f.sources, staging, 9);
  std::mt19937 rng(3);
  auto* bytes = staging.data_ptr<uint8_t>();
  int caught = 0, tried = 0;
  for (int trial = 0; trial < 500; ++trial) {
    // Any byte of any bucket's data or trailer (padding between data and trailer is not sent
    // to the engine and is not covered).
    const BucketPlan& b = f.layout.buckets[rng() % f.layout.count()];
    int64_t data = b.numel * 2;
    int64_t pos = rng() % (data + int64_t(sizeof(BucketTrailer)));
    int64_t at = b.byte_offset + (pos < data ? pos : b.TrailerOffset(2) + (pos - data));
    uint8_t old = bytes[at];
    bytes[at] = static_cast<uint8_t>(old ^ (1u + rng() % 255));
    ++tried;
    ChecksumBuckets(f.layout, staging, 0, f.layout.count(), sums);
    auto s = VerifyBuckets(f.layout, staging, 0, f.layout.count(), sums, 9);
    if (s.code() == absl::StatusCode::kDataLoss) ++caught;
    bytes[at] = old;
  }
  EXPECT_EQ(caught, tried);
  ChecksumBuckets(f.layout, staging, 0, f.layout.count(), sums);
  EXPECT_TRUE(VerifyBuckets(f.layout, staging, 0, f.layout.count(), sums, 9).ok());
}

TEST(BucketOpsTest, DirectPackWritesTheTargetsWithTheSameChecksums) {
  Fixture f;
  at::Tensor staging = f.Staging(), expect = f.Sums(), got = f.Sums();
  PackAll(f.layout, f.sources, staging, 2);
  PackDirect(f.layout, f.sources, f.targets, expect);
  for (size_t p = 0; p < f.sources.size(); ++p) ExpectBitwise(f.targets[p], f.sources[p].to(at::kBFloat16));
  // Same checksums as the trailers a bucketed transfer carries.
  for (int32_t b = 0; b < f.layout.count(); ++b) {
    BucketTrailer t;
    std::memcpy(&t, staging.data_ptr<uint8_t>() + f.layout.buckets[b].byte_offset + f.layout.buckets[b].TrailerOffset(2),
                sizeof(t));
    EXPECT_EQ(static_cast<uint64_t>(expect[b].item<int64_t>()), t.checksum);
  }
  ChecksumTargets(f.layout, f.targets, got);
  EXPECT_TRUE(CompareChecksums(expect, got, 2).ok());
  f.targets[4].view(-1)[7] = 123.0;  // a stray write into the engine
  ChecksumTargets(f.layout, f.targets, got);
  EXPECT_EQ(CompareChecksums(expect, got, 2).code(), absl::StatusCode::kDataLoss);
}

TEST(BucketOpsTest, NonFiniteSourcesAreCounted) {
  Fixture f;
  f.sources[0].view(-1)[3] = std::numeric_limits<float>::infinity();
  f.sources[2].view(-1)[5] = std::numeric_limits<float>::quiet_NaN();
  at::Tensor bad = at::zeros({1}, at::kInt);
  PackAll(f.layout, f.sources, f.Staging(), 1, bad);
  EXPECT_EQ(NonFinite(bad), 2);
  at::Tensor checked = at::zeros({1}, at::kInt);
  CountNonFinite(f.layout, f.sources, checked);
  EXPECT_EQ(NonFinite(checked), 2);
}

TEST(BucketOpsTest, MismatchedTensorsAreRefused) {
  Fixture f;
  auto wrong = f.sources;
  wrong[1] = at::zeros({25}, at::kFloat);
  EXPECT_THROW(PackAll(f.layout, wrong, f.Staging(), 1), c10::Error);
  auto ints = f.sources;
  ints[1] = at::zeros({24}, at::kInt);
  EXPECT_THROW(PackAll(f.layout, ints, f.Staging(), 1), c10::Error);
  EXPECT_THROW(PackAll(f.layout, f.sources, at::zeros({16}, at::kByte), 1), c10::Error);
  auto fp32_targets = f.targets;
  fp32_targets[0] = at::zeros({50, 24}, at::kFloat);
  EXPECT_THROW(ApplyBuckets(f.layout, f.Staging(), 0, f.layout.count(), fp32_targets), c10::Error);
}

}  // namespace
}  // namespace tidal::weight_sync
