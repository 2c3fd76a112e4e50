#include "trainer/losses.h"

#include <gtest/gtest.h>

#include <cmath>

#include "trainer/rollout_correction.h"

namespace tidal::trainer {
namespace {

at::Tensor T(std::vector<double> v) { return at::tensor(v, at::kDouble).to(at::kFloat); }
at::Tensor I(std::vector<int64_t> v) { return at::tensor(v, at::kLong); }

// Three tokens: sequence 0 = tokens {0, 1}, sequence 1 = token {2}; old logprobs 0, so the
// ratios are exp(lp) = {1.5, 0.5, 1.0}; advantages {1, -1, 2}.
struct Fixture {
  at::Tensor lp = T({std::log(1.5), std::log(0.5), 0.0}).requires_grad_();
  PolicyLossInput In(const at::Tensor& weights) {
    PolicyLossInput in;
    in.logprobs = lp;
    in.old_logprobs = T({0, 0, 0});
    in.advantages = T({1, -1, 2});
    in.mask = T({1, 1, 1});
    in.seq_index = I({0, 0, 1});
    in.num_seqs = 2;
    in.weights = weights;
    return in;
  }
  at::Tensor Weights(LossAggregation agg, double max_len = 0) {
    return AggregationWeights(T({1, 1, 1}), I({0, 0, 1}), T({2, 1}), agg, LossNormalizers{3, 2}, max_len);
  }
};

void ExpectGrad(const at::Tensor& lp, std::vector<double> expect) {
  ASSERT_TRUE(lp.grad().defined());
  for (size_t i = 0; i < expect.size(); ++i) EXPECT_NEAR(lp.grad()[i].item<double>(), expect[i], 1e-6) << "token " << i;
}

// Clipped ratios {1.28, 0.8, 1.0}; min terms {1.28, -0.8, 2}; token mean of the negation.
TEST(PolicyLoss, PpoClipTokenMean) {
  Fixture f;
  PolicyLossConfig c;  // clip_low 0.2, clip_high 0.28
  auto out = PolicyLoss(c, f.In(f.Weights(LossAggregation::kTokenMean)));
  EXPECT_NEAR(out.loss.item<double>(), (-1.28 + 0.8 - 2.0) / 3, 1e-6);
  EXPECT_EQ(out.clipped_tokens, 2);
  out.loss.backward();
  ExpectGrad(f.lp, {0, 0, -2.0 / 3});  // clipped tokens carry no gradient
}

// Clip-higher: ratio 1.25 with A > 0 is clipped by a symmetric 0.2 but not by clip_high 0.28.
TEST(PolicyLoss, AsymmetricClipHigher) {
  PolicyLossInput in;
  in.logprobs = T({std::log(1.25)}).requires_grad_();
  in.old_logprobs = T({0});
  in.advantages = T({1});
  in.mask = T({1});
  in.seq_index = I({0});
  in.num_seqs = 1;
  in.weights = T({1});
  PolicyLossConfig sym;
  sym.clip_high = 0.2;
  EXPECT_NEAR(PolicyLoss(sym, in).loss.item<double>(), -1.2, 1e-6);
  PolicyLossConfig dapo;  // clip_high 0.28
  auto out = PolicyLoss(dapo, in);
  EXPECT_NEAR(out.loss.item<double>(), -1.25, 1e-6);
  EXPECT_EQ(out.clipped_tokens, 0);
}

// Seq-mean: weights {1/4, 1/4, 1/2}: -1.28/4 + 0.8/4 - 2/2.
TEST(PolicyLoss, SeqMeanAggregation) {
  Fixture f;
  auto out = PolicyLoss(PolicyLossConfig{}, f.In(f.Weights(LossAggregation::kSeqMeanTokenMean)));
  EXPECT_NEAR(out.loss.item<double>(), -1.12, 1e-6);
}

// Dr.GRPO: every token weighs 1 / (max_len * sequences) = 1/8.
TEST(PolicyLoss, DrGrpoAggregation) {
  Fixture f;
  auto out = PolicyLoss(PolicyLossConfig{}, f.In(f.Weights(LossAggregation::kSeqMeanTokenSum, 4)));
  EXPECT_NEAR(out.loss.item<double>(), (-1.28 + 0.8 - 2.0) / 8, 1e-6);
  EXPECT_THROW(f.Weights(LossAggregation::kSeqMeanTokenSum, 0), c10::Error);
}

// GSPO: s_0 = exp((log 1.5 + log 0.5) / 2) = sqrt(0.75), s_1 = 1; A per sequence {1, 2}.
TEST(PolicyLoss, GspoSequenceRatio) {
  Fixture f;
  PolicyLossConfig c;
  c.type = PolicyLossType::kGspo;
  PolicyLossInput in = f.In(f.Weights(LossAggregation::kSeqMeanTokenMean));
  in.advantages = T({1, 1, 2});
  auto out = PolicyLoss(c, in);
  const double s0 = std::sqrt(0.75);
  EXPECT_NEAR(out.loss.item<double>(), -s0 / 2 - 1.0, 1e-6);
  EXPECT_EQ(out.clipped_tokens, 0);
  out.loss.backward();
  ExpectGrad(f.lp, {-s0 / 4, -s0 / 4, -1.0});
  // GSPO-sized clip range: s_0 far below 1 - 3e-4 with A < 0 -> clipped for the whole sequence.
  Fixture g;
  PolicyLossConfig tight = c;
  tight.clip_low = 3e-4;
  tight.clip_high = 4e-4;
  PolicyLossInput neg = g.In(g.Weights(LossAggregation::kSeqMeanTokenMean));
  neg.advantages = T({-1, -1, 2});
  auto o2 = PolicyLoss(tight, neg);
  EXPECT_EQ(o2.clipped_tokens, 2);
  EXPECT_NEAR(o2.loss.item<double>(), (1 - 3e-4) / 2 - 1.0, 1e-6);
}

// CISPO: weights sg(clip(r, 0, 1.28)) = {1.28, 0.5, 1}; loss -w A lp, token mean.
TEST(PolicyLoss, CispoClipsTheWeightNotTheGradient) {
  Fixture f;
  PolicyLossConfig c;
  c.type = PolicyLossType::kCispo;
  c.clip_low = 1.0;  // no lower bound, as in MiniMax-M1
  auto out = PolicyLoss(c, f.In(f.Weights(LossAggregation::kTokenMean)));
  const double expect = -(1.28 * 1 * std::log(1.5) + 0.5 * -1 * std::log(0.5)) / 3;
  EXPECT_NEAR(out.loss.item<double>(), expect, 1e-6);
  EXPECT_EQ(out.clipped_tokens, 1);
  out.loss.backward();
  ExpectGrad(f.lp, {-1.28 / 3, 0.5 / 3, -2.0 / 3});  // every token keeps a gradient
}

// d = lp - ref = {0.5, -1}.
TEST(PolicyLoss, KlEstimators) {
  at::Tensor lp = T({-1, -2}), ref = T({-1.5, -1});
  at::Tensor k1 = KlPenalty(lp, ref, KlEstimator::kK1), k2 = KlPenalty(lp, ref, KlEstimator::kK2),
             k3 = KlPenalty(lp, ref, KlEstimator::kK3);
  EXPECT_NEAR(k1[0].item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(k1[1].item<double>(), -1.0, 1e-6);
  EXPECT_NEAR(k2[0].item<double>(), 0.125, 1e-6);
  EXPECT_NEAR(k2[1].item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(k3[0].item<double>(), std::exp(-0.5) - 0.5, 1e-6);
  EXPECT_NEAR(k3[1].item<double>(), std::exp(1.0) - 2.0, 1e-6);
}

TEST(PolicyLoss, KlAndEntropyTermsAddToTheLoss) {
  Fixture f;
  PolicyLossConfig c;
  c.kl_coef = 0.1;
  c.kl_estimator = KlEstimator::kK1;
  c.entropy_coef = 0.01;
  PolicyLossInput in = f.In(f.Weights(LossAggregation::kTokenMean));
  in.ref_logprobs = T({0, 0, 0});
  in.entropy = T({1, 2, 3});
  auto out = PolicyLoss(c, in);
  const double surrogate = (-1.28 + 0.8 - 2.0) / 3;
  const double kl = (std::log(1.5) + std::log(0.5)) / 3;
  EXPECT_NEAR(out.loss.item<double>(), surrogate + 0.1 * kl - 0.01 * 2.0, 1e-6);
  EXPECT_NEAR(out.entropy_sum, 6.0, 1e-6);
}

TEST(PolicyLoss, IsWeightsScaleTokens) {
  Fixture f;
  PolicyLossInput in = f.In(f.Weights(LossAggregation::kTokenMean));
  in.is_weights = T({1, 1, 0.5});
  EXPECT_NEAR(PolicyLoss(PolicyLossConfig{}, in).loss.item<double>(), (-1.28 + 0.8 - 1.0) / 3, 1e-6);
}

TEST(PolicyLoss, MaskedTokensWeighNothing) {
  at::Tensor w = AggregationWeights(T({1, 0, 1}), I({0, 0, 1}), T({1, 1}), LossAggregation::kSeqMeanTokenMean,
                                    LossNormalizers{2, 2}, 0);
  EXPECT_TRUE(at::allclose(w, T({0.5, 0, 0.5})));
}

TEST(SftLoss, MaskedCrossEntropy) {
  EXPECT_NEAR(MaskedCrossEntropy(T({-1, -2, -3}), T({0.5, 0, 0.5})).item<double>(), 2.0, 1e-6);
}

// trainer lp {0, log 3, log 0.5} vs rollout 0: ratios {1, 3, 0.5}.
TEST(RolloutCorrection, TruncatedAndMaskedImportanceSampling) {
  at::Tensor tr = T({0, std::log(3.0), std::log(0.5)}), ro = T({0, 0, 0}), m = T({1, 1, 1});
  MismatchStats s;
  at::Tensor tis = ImportanceWeights(tr, ro, m, IsCorrection::kTis, 2.0, &s);
  EXPECT_TRUE(at::allclose(tis, T({1, 2, 0.5})));
  EXPECT_NEAR(s.max_abs_diff, std::log(3.0), 1e-6);
  EXPECT_NEAR(s.kl_sum, (3 - std::log(3.0) - 1) + (0.5 - std::log(0.5) - 1), 1e-5);
  EXPECT_NEAR(s.weight_sum, 3.5, 1e-6);
  MismatchStats s2;
  at::Tensor mis = ImportanceWeights(tr, ro, m, IsCorrection::kMis, 2.0, &s2);
  EXPECT_TRUE(at::allclose(mis, T({1, 0, 0.5})));
  EXPECT_EQ(s2.masked_tokens, 1);
  EXPECT_TRUE(at::allclose(ImportanceWeights(tr, ro, T({1, 0, 1}), IsCorrection::kNone, 0, nullptr), T({1, 0, 1})));
}

}  // namespace
}  // namespace tidal::trainer
