#include "rollout/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace tidal::rollout {
namespace {

// logits whose softmax (T = 1) is exactly `probs`.
at::Tensor LogitsFor(std::vector<double> probs) {
  at::Tensor p = at::tensor(probs, at::kDouble);
  return p.log().to(at::kFloat).unsqueeze(0);
}

int32_t SampleOne(const at::Tensor& logits, const SamplingParams& p, uint64_t seed,
                  int64_t index = 0) {
  SampleRow row{&p, seed, index};
  return Sample(logits, std::span<const SampleRow>(&row, 1)).tokens[0];
}

std::map<int32_t, int> Histogram(const at::Tensor& logits, const SamplingParams& p, int n) {
  std::map<int32_t, int> h;
  for (int s = 0; s < n; ++s) ++h[SampleOne(logits, p, static_cast<uint64_t>(s))];
  return h;
}

TEST(Sampler, GreedyTakesArgmaxAndReturnsTemperatureOneLogprob) {
  at::Tensor logits = at::tensor({0.1f, 2.0f, -1.0f, 1.9f}).unsqueeze(0);
  SamplingParams p;
  p.temperature = 0.0;
  SampleRow row{&p, 7, 0};
  SampleResult r = Sample(logits, std::span<const SampleRow>(&row, 1));
  EXPECT_EQ(r.tokens[0], 1);
  EXPECT_FLOAT_EQ(r.logprobs[0], at::log_softmax(logits, 1)[0][1].item<float>());
}

TEST(Sampler, LogprobIsFullVocabTemperatureScaledBeforeTruncation) {
  at::Tensor logits = at::tensor({1.0f, 0.5f, 0.2f, -0.3f, 0.9f}).unsqueeze(0);
  SamplingParams p;
  p.temperature = 0.7;
  p.top_k = 2;
  p.top_p = 0.9;
  p.min_p = 0.1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    SampleRow row{&p, seed, 3};
    SampleResult r = Sample(logits, std::span<const SampleRow>(&row, 1));
    at::Tensor ref = at::log_softmax(logits / 0.7, 1)[0];
    EXPECT_FLOAT_EQ(r.logprobs[0], ref[r.tokens[0]].item<float>());
  }
}

TEST(Sampler, FrequenciesFollowTheDistribution) {
  at::Tensor logits = LogitsFor({0.5, 0.3, 0.15, 0.05});
  SamplingParams p;
  auto h = Histogram(logits, p, 4000);
  EXPECT_NEAR(h[0] / 4000.0, 0.5, 0.03);
  EXPECT_NEAR(h[1] / 4000.0, 0.3, 0.03);
  EXPECT_NEAR(h[2] / 4000.0, 0.15, 0.03);
  EXPECT_NEAR(h[3] / 4000.0, 0.05, 0.02);
}

TEST(Sampler, TemperatureSharpens) {
  at::Tensor logits = LogitsFor({0.5, 0.3, 0.15, 0.05});
  SamplingParams p;
  p.temperature = 0.25;  // p ~ q^4: 0.5^4 / sum = 0.87
  auto h = Histogram(logits, p, 2000);
  EXPECT_NEAR(h[0] / 2000.0, 0.5 * 0.5 * 0.5 * 0.5 / (0.0625 + 0.0081 + 0.00050625 + 0.00000625),
              0.03);
}

TEST(Sampler, TopKKeepsOnlyTheKMostLikely) {
  at::Tensor logits = LogitsFor({0.1, 0.4, 0.2, 0.3});
  SamplingParams p;
  p.top_k = 2;
  auto h = Histogram(logits, p, 1000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_NEAR(h[1] / 1000.0, 0.4 / 0.7, 0.05);
  EXPECT_NEAR(h[3] / 1000.0, 0.3 / 0.7, 0.05);
  p.top_k = 1;
  EXPECT_EQ(Histogram(logits, p, 50), (std::map<int32_t, int>{{1, 50}}));
}

TEST(Sampler, TopPKeepsSmallestSetReachingP) {
  at::Tensor logits = LogitsFor({0.5, 0.3, 0.15, 0.05});
  SamplingParams p;
  p.top_p = 0.7;  // 0.5 < 0.7, 0.5 + 0.3 >= 0.7: keep {0, 1}
  auto h = Histogram(logits, p, 1000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_NEAR(h[0] / 1000.0, 0.5 / 0.8, 0.05);
  p.top_p = 0.81;  // needs token 2 too
  EXPECT_EQ(Histogram(logits, p, 1000).size(), 3u);
}

TEST(Sampler, TopPAppliesToTheTopKRenormalisedDistribution) {
  at::Tensor logits = LogitsFor({0.4, 0.3, 0.2, 0.1});
  SamplingParams p;
  p.top_k = 2;    // {0.4, 0.3} -> {0.571, 0.429}
  p.top_p = 0.5;  // 0.571 reaches 0.5 alone
  EXPECT_EQ(Histogram(logits, p, 200), (std::map<int32_t, int>{{0, 200}}));
}

TEST(Sampler, MinPDropsTokensBelowFractionOfMax) {
  at::Tensor logits = LogitsFor({0.5, 0.3, 0.15, 0.05});
  SamplingParams p;
  p.min_p = 0.4;  // threshold 0.2: keep {0, 1}
  auto h = Histogram(logits, p, 1000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_GT(h[1], 0);
}

TEST(Sampler, SeededDrawsAreReproducibleAndIndependentOfTheBatch) {
  at::Tensor logits = at::randn({6, 50}, at::TensorOptions().dtype(at::kFloat));
  std::vector<SamplingParams> params(6);
  params[1].top_k = 5;
  params[2].top_p = 0.8;
  params[3].temperature = 0.0;
  params[4].min_p = 0.05;
  params[5].temperature = 1.7;
  std::vector<SampleRow> rows;
  for (int i = 0; i < 6; ++i) rows.push_back({&params[i], 1000u + i, 5});
  SampleResult all = Sample(logits, rows);
  SampleResult again = Sample(logits, rows);
  EXPECT_EQ(all.tokens, again.tokens);
  for (int i = 0; i < 6; ++i) {
    SampleResult alone = Sample(logits.narrow(0, i, 1), std::span<const SampleRow>(&rows[i], 1));
    EXPECT_EQ(alone.tokens[0], all.tokens[i]) << "row " << i;
    EXPECT_FLOAT_EQ(alone.logprobs[0], all.logprobs[i]) << "row " << i;
  }
  // A different seed or a different token index gives a different stream.
  int differ = 0;
  for (int s = 0; s < 50; ++s) {
    differ += SampleOne(logits.narrow(0, 0, 1), params[0], s, 0) !=
              SampleOne(logits.narrow(0, 0, 1), params[0], s, 1);
  }
  EXPECT_GT(differ, 25);
}

TEST(Sampler, UniformIsInUnitIntervalAndSpread) {
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = UniformForToken(123, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.01);
}

std::string CharDetok(std::span<const int32_t> ids) {
  std::string s;
  for (int32_t id : ids) s.push_back(static_cast<char>(id));
  return s;
}

TEST(StopCheck, TokensStringsAndLengths) {
  SamplingParams p;
  p.max_new_tokens = 5;
  p.stop_token_ids = {7};
  std::vector<int32_t> eos = {2};
  std::vector<int32_t> out = {'a', 2};
  EXPECT_TRUE(CheckStop(p, out, eos, 10, 100, nullptr).stop);
  p.ignore_eos = true;
  EXPECT_FALSE(CheckStop(p, out, eos, 10, 100, nullptr).stop);
  out = {'a', 7};
  EXPECT_TRUE(CheckStop(p, out, eos, 10, 100, nullptr).stop);
  out = {'a', 'b', 'c', 'd', 'e'};
  StopCheck c = CheckStop(p, out, eos, 10, 100, nullptr);
  EXPECT_FALSE(c.stop);
  EXPECT_TRUE(c.length);
  out = {'a', 'b'};
  EXPECT_TRUE(CheckStop(p, out, eos, 100, 100, nullptr).length);  // max_model_len
  EXPECT_FALSE(CheckStop(p, out, eos, 99, 100, nullptr).length);
  p.stop_strings = {"END", "xy"};
  p.max_new_tokens = 100;
  out = {'a', 'E', 'N'};
  EXPECT_FALSE(CheckStop(p, out, eos, 10, 1000, CharDetok).stop);
  out.push_back('D');
  c = CheckStop(p, out, eos, 10, 1000, CharDetok);
  EXPECT_TRUE(c.stop);
  EXPECT_EQ(c.stop_string, "END");
}

}  // namespace
}  // namespace tidal::rollout
