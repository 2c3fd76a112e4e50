#include "trainer/advantages.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tidal::trainer {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;

// Hand-computed: group 0 rewards {1,0,1,1}: mean 0.75, unbiased std sqrt(0.75/3) = 0.5.
TEST(Advantages, GrpoNormalisesWithinGroups) {
  std::vector<double> r = {1, 0, 1, 1, 0.5, 0.5};
  std::vector<int64_t> g = {0, 0, 0, 0, 7, 7};
  EXPECT_THAT(GroupNormalizedAdvantages(r, g, /*scale_by_std=*/true, 1e-6),
              ElementsAre(DoubleNear(0.5, 1e-5), DoubleNear(-1.5, 1e-5), DoubleNear(0.5, 1e-5), DoubleNear(0.5, 1e-5),
                          DoubleNear(0, 1e-12), DoubleNear(0, 1e-12)));
  // Dr.GRPO: no std division.
  EXPECT_THAT(GroupNormalizedAdvantages(r, g, /*scale_by_std=*/false, 1e-6),
              ElementsAre(DoubleNear(0.25, 1e-12), DoubleNear(-0.75, 1e-12), DoubleNear(0.25, 1e-12),
                          DoubleNear(0.25, 1e-12), DoubleNear(0, 1e-12), DoubleNear(0, 1e-12)));
}

TEST(Advantages, GroupOfOneGetsZero) {
  EXPECT_THAT(GroupNormalizedAdvantages({3.0}, {1}, true, 1e-6), ElementsAre(0.0));
  EXPECT_THAT(RlooAdvantages({3.0}, {1}), ElementsAre(0.0));
}

// RLOO: a_i = r_i - mean of the others: 1 - 2/3, 0 - 1, 1 - 2/3, 1 - 2/3.
TEST(Advantages, RlooLeavesOneOut) {
  EXPECT_THAT(RlooAdvantages({1, 0, 1, 1, 0.5, 0.5}, {0, 0, 0, 0, 1, 1}),
              ElementsAre(DoubleNear(1.0 / 3, 1e-12), DoubleNear(-1.0, 1e-12), DoubleNear(1.0 / 3, 1e-12),
                          DoubleNear(1.0 / 3, 1e-12), DoubleNear(0, 1e-12), DoubleNear(0, 1e-12)));
}

// REINFORCE++: {1,2,3,4}: mean 2.5, unbiased std sqrt(5/3) = 1.2909944.
TEST(Advantages, ReinforcePlusPlusWhitensOverTheBatch) {
  AdvantageOptions o;
  o.estimator = AdvantageEstimator::kReinforcePlusPlus;
  o.eps = 0;
  EXPECT_THAT(ComputeAdvantages(o, {1, 2, 3, 4}, {0, 0, 1, 1}, nullptr),
              ElementsAre(DoubleNear(-1.1618950, 1e-6), DoubleNear(-0.3872983, 1e-6), DoubleNear(0.3872983, 1e-6),
                          DoubleNear(1.1618950, 1e-6)));
}

// Baseline variant: centred {-1, 1, -2, 2}, std sqrt(10/3) = 1.8257419.
TEST(Advantages, ReinforcePlusPlusBaselineCentresPerGroupThenWhitens) {
  AdvantageOptions o;
  o.estimator = AdvantageEstimator::kReinforcePlusPlusBaseline;
  o.eps = 0;
  EXPECT_THAT(ComputeAdvantages(o, {1, 3, 2, 6}, {0, 0, 1, 1}, nullptr),
              ElementsAre(DoubleNear(-0.5477226, 1e-6), DoubleNear(0.5477226, 1e-6), DoubleNear(-1.0954451, 1e-6),
                          DoubleNear(1.0954451, 1e-6)));
}

// Two ranks holding halves of the batch get the full-batch answer from summed moments.
TEST(Advantages, GlobalMomentsMatchTheWholeBatch) {
  AdvantageOptions o;
  o.estimator = AdvantageEstimator::kReinforcePlusPlus;
  std::vector<double> a = {1, 2}, b = {3, 4};
  BatchMoments m = BatchMoments::Of(a);
  BatchMoments mb = BatchMoments::Of(b);
  m.sum += mb.sum;
  m.sum_sq += mb.sum_sq;
  m.count += mb.count;
  auto whole = ComputeAdvantages(o, {1, 2, 3, 4}, {0, 1, 2, 3}, nullptr);
  auto part = ComputeAdvantages(o, b, {2, 3}, &m);
  EXPECT_NEAR(part[0], whole[2], 1e-12);
  EXPECT_NEAR(part[1], whole[3], 1e-12);
}

TEST(Advantages, DynamicSamplingDropsUniformGroups) {
  auto r = FilterUniformGroups({1, 1, 0, 1, 0.5, 0, 0, 0}, {0, 0, 1, 1, 2, 3, 3, 3});
  EXPECT_THAT(r.kept, ElementsAre(2u, 3u));
  EXPECT_EQ(r.kept_groups, 1);
  EXPECT_EQ(r.dropped_groups, 3);  // all-ones, single sample, all-zeros
  EXPECT_EQ(r.dropped_samples, 6);
}

TEST(Advantages, RewardsUniformIsTheZeroVarianceTest) {
  EXPECT_TRUE(RewardsUniform(std::vector<double>{}));
  EXPECT_TRUE(RewardsUniform(std::vector<double>{0.5}));
  EXPECT_TRUE(RewardsUniform(std::vector<double>{1, 1, 1}));
  EXPECT_TRUE(RewardsUniform(std::vector<double>{1, 1 + 0.5 * kUniformRewardTol}));
  EXPECT_FALSE(RewardsUniform(std::vector<double>{1, 1 + 2 * kUniformRewardTol}));
  EXPECT_FALSE(RewardsUniform(std::vector<double>{0, 1, 0}));
  EXPECT_TRUE(RewardsUniform(std::vector<double>{0, 0.1}, 0.2));
  // The batch filter applies the same test per group: a group within tolerance is dropped.
  auto r = FilterUniformGroups({1, 1 + 0.5 * kUniformRewardTol, 0, 1}, {0, 0, 1, 1});
  EXPECT_THAT(r.kept, ElementsAre(2u, 3u));
}

TEST(Advantages, ParsesNames) {
  EXPECT_EQ(*ParseAdvantageEstimator("rloo"), AdvantageEstimator::kRloo);
  EXPECT_EQ(ParseAdvantageEstimator("gae").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tidal::trainer
