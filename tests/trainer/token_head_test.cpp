// The token head (trainer/token_head.h) on the CPU: its statistics and in-place gradient against
// log_softmax + autograd over fp32 logits, and the chunked lm_head (keep and recompute) against
// autograd through the full [K, V] logits.
#include "trainer/token_head.h"

#include <gtest/gtest.h>

namespace tidal::trainer {
namespace {

struct Reference {
  at::Tensor logprobs, entropy, grad_logits;
};

// log_softmax + autograd: the formulation the head replaces.
Reference Autograd(const at::Tensor& logits, const at::Tensor& targets, double temperature, const at::Tensor& g_lp,
                   const at::Tensor& g_ent) {
  at::Tensor x = logits.detach().to(at::kDouble).requires_grad_(true);
  at::Tensor logp = at::log_softmax(x / temperature, -1);
  at::Tensor lp = logp.gather(1, targets.unsqueeze(1)).squeeze(1);
  at::Tensor ent = -(logp.exp() * logp).sum(-1);
  at::Tensor obj = (lp * g_lp.to(at::kDouble)).sum();
  if (g_ent.defined()) obj = obj + (ent * g_ent.to(at::kDouble)).sum();
  obj.backward();
  return {lp.detach(), ent.detach(), x.grad()};
}

TEST(TokenHeadTest, StatsAndGradientMatchLogSoftmaxAutograd) {
  at::manual_seed(3);
  for (double temperature : {1.0, 0.7}) {
    at::Tensor logits = at::randn({6, 37}) * 4;  // a peaked row or two
    logits[2][5] = 30;
    at::Tensor targets = at::tensor({0, 36, 5, 11, 11, 20}, at::kLong);
    at::Tensor g_lp = at::randn({6}), g_ent = at::randn({6});
    Reference ref = Autograd(logits, targets, temperature, g_lp, g_ent);

    HeadStats st = TokenHeadForward(logits, targets, temperature, /*with_entropy=*/true);
    EXPECT_TRUE(at::allclose(st.logprobs.to(at::kDouble), ref.logprobs, 1e-5, 1e-5)) << temperature;
    EXPECT_TRUE(at::allclose(st.entropy.to(at::kDouble), ref.entropy, 1e-5, 1e-5)) << temperature;

    at::Tensor g = logits.clone();
    TokenHeadBackwardInPlace(g, targets, st, g_lp, g_ent, temperature);
    EXPECT_TRUE(at::allclose(g.to(at::kDouble), ref.grad_logits, 1e-5, 1e-6)) << temperature;

    // Without the entropy term the gradient is the logprob term alone.
    Reference lp_only = Autograd(logits, targets, temperature, g_lp, at::Tensor());
    HeadStats no_ent = TokenHeadForward(logits, targets, temperature, /*with_entropy=*/false);
    EXPECT_FALSE(no_ent.entropy.defined());
    at::Tensor g2 = logits.clone();
    TokenHeadBackwardInPlace(g2, targets, no_ent, g_lp, at::Tensor(), temperature);
    EXPECT_TRUE(at::allclose(g2.to(at::kDouble), lp_only.grad_logits, 1e-5, 1e-6)) << temperature;
  }
}

TEST(TokenHeadTest, RejectsMismatchedShapes) {
  at::Tensor logits = at::randn({4, 9});
  EXPECT_THROW(TokenHeadForward(logits, at::zeros({3}, at::kLong), 1.0, false), c10::Error);
  EXPECT_THROW(TokenHeadForward(logits, at::zeros({4}, at::kInt), 1.0, false), c10::Error);
  EXPECT_THROW(TokenHeadForward(logits.t(), at::zeros({9}, at::kLong), 1.0, false), c10::Error);
  EXPECT_THROW(TokenHeadForward(logits, at::zeros({4}, at::kLong), 0.0, false), c10::Error);
  HeadStats st = TokenHeadForward(logits, at::zeros({4}, at::kLong), 1.0, /*with_entropy=*/false);
  // An entropy gradient needs the forward's entropy.
  EXPECT_THROW(TokenHeadBackwardInPlace(logits, at::zeros({4}, at::kLong), st, at::ones({4}), at::ones({4}), 1.0),
               c10::Error);
}

TEST(TokenHeadTest, ChunkedHeadMatchesAutogradThroughTheFullLogitsKeptOrRecomputed) {
  at::manual_seed(4);
  const int64_t k = 10, h = 8, v = 23;
  at::Tensor rows = at::randn({k, h}), weight = at::randn({v, h}) * 0.5;
  at::Tensor targets = at::randint(0, v, {k}, at::kLong);
  at::Tensor g_lp = at::randn({k}), g_ent = at::randn({k});
  const double temperature = 0.9;

  at::Tensor r = rows.to(at::kDouble).requires_grad_(true), w = weight.to(at::kDouble).requires_grad_(true);
  at::Tensor logp = at::log_softmax(at::mm(r, w.t()) / temperature, -1);
  at::Tensor lp = logp.gather(1, targets.unsqueeze(1)).squeeze(1);
  at::Tensor ent = -(logp.exp() * logp).sum(-1);
  ((lp * g_lp.to(at::kDouble)).sum() + (ent * g_ent.to(at::kDouble)).sum()).backward();

  for (int64_t chunk : {int64_t{3}, int64_t{10}, int64_t{64}}) {
    for (int64_t keep : {int64_t{0}, int64_t{1} << 30}) {
      ChunkedHead head(rows, weight, targets, temperature, chunk, keep);
      auto [logprobs, entropy] = head.Forward(/*with_entropy=*/true);
      EXPECT_TRUE(at::allclose(logprobs.to(at::kDouble), lp.detach(), 1e-5, 1e-5)) << chunk << " " << keep;
      EXPECT_TRUE(at::allclose(entropy.to(at::kDouble), ent.detach(), 1e-5, 1e-5)) << chunk << " " << keep;
      at::Tensor grad_w;
      at::Tensor grad_rows = head.Backward(g_lp, g_ent, &grad_w);
      EXPECT_TRUE(at::allclose(grad_rows.to(at::kDouble), r.grad(), 1e-4, 1e-5)) << chunk << " " << keep;
      EXPECT_TRUE(at::allclose(grad_w.to(at::kDouble), w.grad(), 1e-4, 1e-5)) << chunk << " " << keep;
      // A defined gradient is accumulated into, not replaced.
      at::Tensor acc = at::ones_like(weight);
      ChunkedHead again(rows, weight, targets, temperature, chunk, keep);
      again.Forward(true);
      again.Backward(g_lp, g_ent, &acc);
      EXPECT_TRUE(at::allclose(acc.to(at::kDouble), w.grad() + 1, 1e-4, 1e-5)) << chunk << " " << keep;
    }
  }
}

TEST(TokenHeadTest, ChunkedHeadBackwardBeforeForwardIsAnError) {
  ChunkedHead head(at::randn({2, 4}), at::randn({5, 4}), at::zeros({2}, at::kLong), 1.0, 8, 0);
  at::Tensor gw;
  EXPECT_THROW(head.Backward(at::ones({2}), at::Tensor(), &gw), c10::Error);
}

}  // namespace
}  // namespace tidal::trainer
