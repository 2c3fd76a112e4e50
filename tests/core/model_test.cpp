#include "core/model.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tidal {
namespace {

at::Tensor Ids(std::vector<int64_t> v) { return at::tensor(v, at::kLong); }

ModelConfig SmallQwen3() {
  ModelConfig c;
  c.model_type = "qwen3";
  c.vocab_size = 97;
  c.hidden_size = 48;
  c.intermediate_size = 80;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.qk_norm = true;
  c.rope_theta = 1e6;
  return c;
}

class ModelArchTest : public ::testing::TestWithParam<ModelConfig> {};

TEST_P(ModelArchTest, PackedForwardEqualsSeparateForwards) {
  Model m = Model::RandomInit(GetParam(), 7);
  at::Tensor a = Ids({1, 5, 9, 2, 44}), b = Ids({3, 3, 8, 90, 11, 0, 12});
  at::Tensor packed = m.Logits(at::cat({a, b}), Ids({0, 5, 12}));
  at::Tensor la = m.Logits(a, Ids({0, 5})), lb = m.Logits(b, Ids({0, 7}));
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{12, GetParam().vocab_size}));
  EXPECT_TRUE(at::allclose(packed, at::cat({la, lb}), 1e-5, 1e-5));
}

TEST_P(ModelArchTest, PrefixLogitsDoNotSeeLaterTokens) {
  Model m = Model::RandomInit(GetParam(), 3);
  at::Tensor ids = Ids({4, 8, 15, 16, 23, 42, 7});
  at::Tensor full = m.Logits(ids, Ids({0, 7}));
  at::Tensor prefix = m.Logits(ids.narrow(0, 0, 4), Ids({0, 4}));
  EXPECT_TRUE(at::allclose(full.narrow(0, 0, 4), prefix, 1e-5, 1e-5));
  // ...and later tokens do see earlier ones.
  at::Tensor other = ids.clone();
  other[0] = 5;
  EXPECT_FALSE(at::allclose(m.Logits(other, Ids({0, 7})).narrow(0, 4, 3), full.narrow(0, 4, 3)));
}

TEST_P(ModelArchTest, TokenLogprobsMatchLogSoftmax) {
  Model m = Model::RandomInit(GetParam(), 11);
  at::Tensor ids = Ids({1, 2, 3, 4, 5, 6, 7, 8, 9});
  at::Tensor cu = Ids({0, 4, 9});
  at::Tensor targets = Ids({2, 3, 4, 0, 6, 7, 8, 9, 0});
  for (double temp : {1.0, 0.7}) {
    at::Tensor expect = at::log_softmax(m.Logits(ids, cu) / temp, -1).gather(1, targets.unsqueeze(1)).squeeze(1);
    at::Tensor got = m.TokenLogprobs(ids, cu, targets, temp);
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::allclose(got, expect, 1e-5, 1e-5)) << temp;
  }
}

TEST_P(ModelArchTest, GradientsReachEveryWeight) {
  Model m = Model::RandomInit(GetParam(), 5);
  for (auto& [name, t] : m.weights()) t.requires_grad_(true);
  at::Tensor ids = Ids({1, 2, 3, 4, 5, 6});
  at::Tensor lp = m.TokenLogprobs(ids, Ids({0, 2, 6}), Ids({2, 3, 4, 5, 6, 7}));
  lp.sum().backward();
  for (auto& [name, t] : m.weights()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0) << name;
  }
}

ModelConfig Llama() {
  ModelConfig c = SmallQwen3();
  c.model_type = "llama";
  c.qk_norm = false;
  c.head_dim = 0;
  c.tie_word_embeddings = true;
  c.rope_theta = 5e5;
  return c;
}

INSTANTIATE_TEST_SUITE_P(Archs, ModelArchTest,
                         ::testing::Values(TinyQwen2Config(64, 2, 4, 2, 101), SmallQwen3(), Llama()),
                         [](const auto& info) { return info.param.model_type; });

TEST(ModelTest, RandomInitIsDeterministicAndHfStyle) {
  ModelConfig c = TinyQwen2Config(32, 1, 2, 1, 50);
  Model a = Model::RandomInit(c, 42), b = Model::RandomInit(c, 42), d = Model::RandomInit(c, 43);
  ASSERT_EQ(a.weights().size(), ParamSpecs(c).size());
  for (const auto& spec : ParamSpecs(c)) {
    const at::Tensor& t = a.weights().at(spec.name);
    EXPECT_EQ(t.sizes().vec(), spec.shape) << spec.name;
    EXPECT_TRUE(at::equal(t, b.weights().at(spec.name))) << spec.name;
  }
  EXPECT_FALSE(at::equal(a.weights().at("model.embed_tokens.weight"), d.weights().at("model.embed_tokens.weight")));
  EXPECT_TRUE(at::equal(a.weights().at("model.norm.weight"), at::ones({32})));
  EXPECT_NEAR(a.weights().at("model.embed_tokens.weight").std().item<double>(), 0.02, 0.003);
  EXPECT_EQ(Model::RandomInit(c, 1, at::kBFloat16).weights().at("model.norm.weight").scalar_type(), at::kBFloat16);
}

TEST(ModelTest, RopeIsIdentityAtZeroAndRelative) {
  at::Tensor q = at::randn({1, 2, 8}), k = at::randn({1, 2, 8});
  EXPECT_TRUE(at::allclose(ApplyRope(q, Ids({0}), 1e4), q, 1e-6, 1e-6));
  // <rope(q, m), rope(k, n)> depends only on m - n.
  auto dot = [&](int64_t m, int64_t n) {
    return (ApplyRope(q, Ids({m}), 1e4) * ApplyRope(k, Ids({n}), 1e4)).sum(-1);
  };
  EXPECT_TRUE(at::allclose(dot(5, 2), dot(13, 10), 1e-4, 1e-4));
  EXPECT_FALSE(at::allclose(dot(5, 2), dot(5, 3), 1e-4, 1e-4));
  // Norm is preserved; bf16 input comes back bf16.
  EXPECT_TRUE(at::allclose(ApplyRope(q, Ids({7}), 1e4).norm(), q.norm(), 1e-5, 1e-5));
  EXPECT_EQ(ApplyRope(q.to(at::kBFloat16), Ids({7}), 1e4).scalar_type(), at::kBFloat16);
}

TEST(ModelTest, Llama3RopeScalingFollowsTransformersFormula) {
  ModelConfig c = TinyQwen2Config(64, 1, 4, 4, 10);  // head_dim 16: wavelengths 2*pi .. ~2e4
  EXPECT_TRUE(at::equal(RopeInvFreq(c), 1.0 / at::pow(10000.0f, at::arange(0, 16, 2).to(at::kFloat) / 16.0f)));
  at::Tensor plain = RopeInvFreq(c);
  c.rope_type = "llama3";
  c.rope_factor = 8;
  c.rope_low_freq_factor = 1;
  c.rope_high_freq_factor = 4;
  c.rope_original_max_position_embeddings = 64;  // high band: wavelen < 16, low: > 64
  at::Tensor scaled = RopeInvFreq(c);
  at::Tensor wavelen = 2 * M_PI / plain;
  for (int64_t i = 0; i < 8; ++i) {
    const double w = wavelen[i].item<double>(), p = plain[i].item<double>(), s = scaled[i].item<double>();
    if (w < 16) {
      EXPECT_FLOAT_EQ(s, p) << i;
    } else if (w > 64) {
      EXPECT_FLOAT_EQ(s, p / 8) << i;
    } else {
      const double smooth = (64 / w - 1) / 3;
      EXPECT_NEAR(s, (1 - smooth) * p / 8 + smooth * p, 1e-6 * p) << i;
    }
  }
}

TEST(ModelTest, PackedPositionsRestartPerSequence) {
  at::Tensor p = PackedPositions(Ids({0, 3, 3, 5}), 5);
  EXPECT_TRUE(at::equal(p, Ids({0, 1, 2, 0, 1})));
}

TEST(ModelTest, VarlenAttentionMatchesMaskedReference) {
  at::Tensor q = at::randn({7, 4, 8}), k = at::randn({7, 2, 8}), v = at::randn({7, 2, 8});
  at::Tensor out = VarlenCausalAttention(q, k, v, Ids({0, 3, 7}));
  // Reference: full attention with a block-diagonal causal mask, kv heads repeated.
  at::Tensor kr = k.repeat_interleave(2, 1), vr = v.repeat_interleave(2, 1);
  at::Tensor scores = at::einsum("thd,shd->hts", {q, kr}) / std::sqrt(8.0);
  at::Tensor seq = Ids({0, 0, 0, 1, 1, 1, 1}), pos = at::arange(7);
  at::Tensor allowed = seq.unsqueeze(1).eq(seq.unsqueeze(0)) & pos.unsqueeze(1).ge(pos.unsqueeze(0));
  scores = scores.masked_fill(allowed.logical_not(), -INFINITY);
  at::Tensor ref = at::einsum("hts,shd->thd", {at::softmax(scores, -1), vr});
  EXPECT_TRUE(at::allclose(out, ref, 1e-5, 1e-5));
  EXPECT_THROW(VarlenCausalAttention(q, k, v, Ids({0, 3, 6})), c10::Error);
}

TEST(ModelTest, ChunkedLogprobGradientsMatchDirectAutograd) {
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    at::Tensor h = at::randn({10, 16}).to(dtype).requires_grad_(true);
    at::Tensor w = (at::randn({33, 16}) * 0.3).to(dtype).requires_grad_(true);
    at::Tensor targets = at::randint(0, 33, {10}, at::kLong);
    at::Tensor g = at::randn({10});
    at::Tensor lp = TokenLogprobsFromHidden(h, w, targets, 0.8, /*chunk_tokens=*/3);
    (lp * g).sum().backward();
    at::Tensor gh = h.grad().clone(), gw = w.grad().clone();
    h.mutable_grad().reset();
    w.mutable_grad().reset();
    at::Tensor ref = at::log_softmax(at::matmul(h, w.t()).to(at::kFloat) / 0.8, -1)
                         .gather(1, targets.unsqueeze(1)).squeeze(1);
    const double tol = dtype == at::kFloat ? 1e-5 : 2e-2;
    EXPECT_TRUE(at::allclose(lp, ref, tol, tol));
    (ref * g).sum().backward();
    EXPECT_TRUE(at::allclose(gh.to(at::kFloat), h.grad().to(at::kFloat), tol, tol)) << dtype;
    EXPECT_TRUE(at::allclose(gw.to(at::kFloat), w.grad().to(at::kFloat), tol, tol)) << dtype;
  }
  EXPECT_THROW(TokenLogprobsFromHidden(at::randn({2, 4}), at::randn({5, 4}), Ids({0, 5})), c10::Error);
}

TEST(ModelTest, MissingWeightIsNamed) {
  Model m = Model::RandomInit(TinyQwen2Config(32, 1, 2, 1, 50), 1);
  m.weights().erase("model.layers.0.mlp.up_proj.weight");
  try {
    m.Logits(Ids({1, 2}), Ids({0, 2}));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj.weight"), std::string::npos);
  }
}

}  // namespace
}  // namespace tidal

namespace tidal {
namespace {

// The GPU path is the same ATen code; this pins it to the CPU result (skipped without CUDA).
TEST(ModelCudaTest, CudaForwardAndGradientsMatchCpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  ModelConfig c = SmallQwen3();
  Model cpu = Model::RandomInit(c, 21);
  NamedTensors gpu_w;
  for (auto& [name, t] : cpu.weights()) {
    t.requires_grad_(true);
    gpu_w[name] = t.detach().to(at::kCUDA).requires_grad_(true);
  }
  Model gpu(c, gpu_w);
  at::Tensor ids = Ids({3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5}), cu = Ids({0, 6, 11});
  at::Tensor targets = Ids({1, 4, 1, 5, 9, 0, 6, 5, 3, 5, 0});
  EXPECT_TRUE(at::allclose(gpu.Logits(ids.cuda(), cu.cuda()).cpu(), cpu.Logits(ids, cu), 1e-4, 1e-4));
  at::Tensor lp_cpu = cpu.TokenLogprobs(ids, cu, targets);
  at::Tensor lp_gpu = gpu.TokenLogprobs(ids.cuda(), cu.cuda(), targets.cuda());
  EXPECT_TRUE(at::allclose(lp_gpu.cpu(), lp_cpu, 1e-4, 1e-4));
  lp_cpu.sum().backward();
  lp_gpu.sum().backward();
  for (auto& [name, t] : cpu.weights()) {
    EXPECT_TRUE(at::allclose(gpu.weights().at(name).grad().cpu(), t.grad(), 1e-3, 1e-4)) << name;
  }
  // bf16 on the GPU runs (flash/efficient SDPA kernels) and stays close to fp32.
  NamedTensors bf;
  for (auto& [name, t] : cpu.weights()) bf[name] = t.detach().to(at::kCUDA, at::kBFloat16);
  at::Tensor lp_bf = Model(c, bf).TokenLogprobs(ids.cuda(), cu.cuda(), targets.cuda());
  EXPECT_EQ(lp_bf.scalar_type(), at::kFloat);
  EXPECT_LT((lp_bf.cpu() - lp_cpu.detach()).abs().max().item<double>(), 0.1);
}


// bf16 on CUDA takes the varlen flash-attention path; it must agree with the masked fp32
// reference in values and gradients.
TEST(ModelCudaTest, VarlenFlashAttentionMatchesReference) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  at::Tensor q = at::randn({37, 8, 64}), k = at::randn({37, 2, 64}), v = at::randn({37, 2, 64});
  at::Tensor cu = Ids({0, 5, 6, 30, 37});
  auto reference = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    at::Tensor kr = k.repeat_interleave(4, 1), vr = v.repeat_interleave(4, 1);
    at::Tensor scores = at::einsum("thd,shd->hts", {q, kr}) / 8.0;
    at::Tensor seq = at::repeat_interleave(at::arange(4), cu.diff(1, 0), 0, 37), pos = at::arange(37);
    at::Tensor ok = seq.unsqueeze(1).eq(seq.unsqueeze(0)) & pos.unsqueeze(1).ge(pos.unsqueeze(0));
    return at::einsum("hts,shd->thd", {at::softmax(scores.masked_fill(ok.logical_not(), -INFINITY), -1), vr});
  };
  std::vector<at::Tensor> ref_in = {q.clone().requires_grad_(true), k.clone().requires_grad_(true),
                                    v.clone().requires_grad_(true)};
  std::vector<at::Tensor> gpu_in;
  for (const at::Tensor& t : {q, k, v}) gpu_in.push_back(t.to(at::kCUDA, at::kBFloat16).requires_grad_(true));
  at::Tensor g = at::randn({37, 8, 64});
  at::Tensor ref = reference(ref_in[0], ref_in[1], ref_in[2]);
  (ref * g).sum().backward();
  at::Tensor out = VarlenCausalAttention(gpu_in[0], gpu_in[1], gpu_in[2], cu.cuda());
  (out.to(at::kFloat) * g.cuda()).sum().backward();
  EXPECT_LT((out.cpu().to(at::kFloat) - ref.detach()).abs().max().item<double>(), 3e-2);
  for (int i = 0; i < 3; ++i) {
    double err = (gpu_in[i].grad().cpu().to(at::kFloat) - ref_in[i].grad()).abs().max().item<double>();
    double scale = ref_in[i].grad().abs().max().item<double>();
    EXPECT_LT(err, 3e-2 * scale) << "input " << i;
  }
}

}  // namespace
}  // namespace tidal
