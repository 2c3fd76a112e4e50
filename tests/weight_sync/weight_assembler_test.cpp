#include "weight_sync/weight_assembler.h"

#include <gtest/gtest.h>

#include "core/hash.h"
#include "weight_sync/weight_packer.h"

namespace tidal::weight_sync {
namespace {

NamedTensors Weights() {
  NamedTensors w;
  w["a.weight"] = at::arange(0, 1000, at::kFloat).reshape({10, 100});
  w["b.bias"] = at::arange(0, 10, at::kFloat);
  w["c.weight"] = at::ones({300, 10}, at::kBFloat16);
  w["d.weight"] = at::full({50}, 3.0, at::kFloat);
  return w;
}

TEST(Crc32cTest, KnownVectorAndChaining) {
  const char* s = "123456789";
  EXPECT_EQ(Crc32c(s, 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(Crc32c(s + 4, 5, Crc32c(s, 4)), 0xE3069283u);
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
}

TEST(WeightPackerTest, BucketsRespectTheSizeAndCoverEveryTensor) {
  NamedTensors w = Weights();
  auto buckets = PackWeights(w, 3, /*bucket_bytes=*/4096);
  ASSERT_GE(buckets.size(), 2u);
  uint64_t total = 0;
  size_t entries = 0;
  for (const auto& b : buckets) {
    EXPECT_EQ(b.header.version, 3);
    EXPECT_EQ(b.header.count, static_cast<int32_t>(buckets.size()));
    // Only a tensor larger than the bucket may exceed it, and then it travels alone.
    if (b.header.nbytes > 4096) EXPECT_EQ(b.header.entries.size(), 1u);
    EXPECT_TRUE(VerifyBucket(b.header, b.bytes).ok());
    total += b.header.nbytes;
    entries += b.header.entries.size();
  }
  EXPECT_EQ(entries, w.size());
  EXPECT_EQ(total, buckets[0].header.total_bytes);
}

TEST(WeightAssemblerTest, RoundTripsAllBuckets) {
  NamedTensors w = Weights();
  auto buckets = PackWeights(w, 1, 4096);
  WeightAssembler a;
  a.Begin(1);
  for (size_t i = buckets.size(); i-- > 0;) {  // any order
    ASSERT_TRUE(a.Add(buckets[i].header, buckets[i].bytes).ok());
    EXPECT_EQ(a.Complete(), i == 0);
  }
  auto got = a.Take();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), w.size());
  for (const auto& [name, t] : w) {
    ASSERT_TRUE(got->count(name)) << name;
    EXPECT_EQ(got->at(name).scalar_type(), t.scalar_type());
    EXPECT_TRUE(at::equal(got->at(name), t)) << name;
  }
}

TEST(WeightAssemblerTest, CorruptBucketPoisonsTheVersion) {
  auto buckets = PackWeights(Weights(), 2, 4096);
  WeightAssembler a;
  a.Begin(2);
  ASSERT_TRUE(a.Add(buckets[0].header, buckets[0].bytes).ok());
  std::string bad(buckets[1].bytes.view());
  bad[bad.size() / 2] ^= 1;
  absl::Status s = a.Add(buckets[1].header, Payload::FromString(bad));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("checksum"), std::string::npos) << s;
  // Later good buckets do not resurrect it.
  for (size_t i = 2; i < buckets.size(); ++i) EXPECT_FALSE(a.Add(buckets[i].header, buckets[i].bytes).ok());
  EXPECT_FALSE(a.Complete());
  EXPECT_FALSE(a.Take().ok());
  // A fresh transfer of the same version works.
  a.Begin(2);
  for (auto& b : buckets) ASSERT_TRUE(a.Add(b.header, b.bytes).ok());
  EXPECT_TRUE(a.Take().ok());
}

TEST(WeightAssemblerTest, RejectsTruncationDuplicatesAndOtherVersions) {
  auto buckets = PackWeights(Weights(), 5, 4096);
  WeightAssembler a;
  a.Begin(5);
  std::string cut(buckets[0].bytes.view());
  cut.pop_back();
  EXPECT_EQ(a.Add(buckets[0].header, Payload::FromString(cut)).code(), absl::StatusCode::kDataLoss);
  a.Begin(5);
  ASSERT_TRUE(a.Add(buckets[0].header, buckets[0].bytes).ok());
  EXPECT_FALSE(a.Add(buckets[0].header, buckets[0].bytes).ok());
  a.Begin(6);
  EXPECT_FALSE(a.Add(buckets[0].header, buckets[0].bytes).ok());
  a.Begin(5);
  ASSERT_TRUE(a.Add(buckets[0].header, buckets[0].bytes).ok());
  EXPECT_EQ(a.Take().status().code(), absl::StatusCode::kFailedPrecondition);  // incomplete
}

}  // namespace
}  // namespace tidal::weight_sync
