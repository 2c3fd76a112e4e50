// The rollout engine on a CUDA device (paged-attention kernels, decode CUDA graphs, GPU
// sampling) against the one model definition (core/model.h) on the same weights:
// - fp32: greedy output equals the naive full-recompute loop, with prefix hits, chunked
//   prefill and GQA; graphs and eager steps agree; weight updates keep graphs valid;
// - bf16: engine logprobs vs Model::TokenLogprobs on the same bf16 weights: mean and max
//   |dlogprob| and the mean KL per token (printed; loose bounds asserted).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <iostream>

#include "rollout/engine.h"

namespace tidal::rollout {
namespace {

bool HaveCuda() { return at::hasCUDA(); }
#define REQUIRE_CUDA() \
  if (!HaveCuda()) GTEST_SKIP() << "no CUDA device"

// D=64 with 7 query heads per kv head (Qwen2.5-0.5B's ratio) or D=32 with 4.
Model GpuModel(uint64_t seed, bool wide, at::ScalarType dtype) {
  ModelConfig c = wide ? TinyQwen2Config(448, 2, 7, 1, 257) : TinyQwen2Config(128, 3, 4, 1, 131);
  Model m = Model::RandomInit(c, seed);
  NamedTensors w;
  for (auto& [name, t] : m.weights()) {
    at::Tensor x = t.dim() == 2 ? t * 4.0 : t;  // sharper than HF init: fewer near-tied argmaxes
    w.emplace(name, x.to(at::kCUDA, dtype));
  }
  return Model(c, w);
}

std::vector<int32_t> Prompt(int len, int salt, int vocab) {
  std::vector<int32_t> p(len);
  for (int i = 0; i < len; ++i) p[i] = (i * 7 + salt * 13 + 3) % vocab;
  return p;
}

EngineConfig GpuConfig(bool graphs = true, bool fused = true) {
  EngineConfig c;
  c.cuda_fused_layers = fused;
  c.device = "cuda";
  c.block_size = 4;
  c.num_blocks = 512;
  c.max_batch_tokens = 32;  // prompts over 32 tokens are chunked
  c.max_seqs = 24;
  c.max_model_len = 128;
  c.cuda_graphs = graphs;
  c.eos_token_ids = std::vector<int32_t>{};
  return c;
}

std::unique_ptr<Engine> MakeEngine(const Model& m, EngineConfig c) {
  auto e = Engine::Create(m.config(), m.weights(), c);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(e).value();
}

Request Req(std::string id, std::vector<int32_t> prompt, int max_new, double temperature = 0.0,
            uint64_t seed = 1) {
  Request r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.params.max_new_tokens = max_new;
  r.params.temperature = temperature;
  r.seed = seed;
  return r;
}

at::Tensor Ids(const std::vector<int64_t>& ids) { return at::tensor(ids, at::kLong).to(at::kCUDA); }
at::Tensor Cu(int64_t n) { return at::tensor(std::vector<int64_t>{0, n}, at::kLong).to(at::kCUDA); }

// The naive loop: whole context recomputed per token (Model::Logits), then Sample() on the
// last row (the GPU sampler for CUDA logits, same seed and index as the engine).
std::vector<int32_t> Naive(const Model& m, const Request& r) {
  c10::InferenceMode guard;
  std::vector<int64_t> ids(r.prompt.begin(), r.prompt.end());
  std::vector<int32_t> out;
  for (int64_t i = 0; i < r.params.max_new_tokens; ++i) {
    at::Tensor logits = m.Logits(Ids(ids), Cu(std::ssize(ids)));
    SampleRow row{&r.params, *r.seed, i};
    const int32_t tok = Sample(logits.narrow(0, logits.size(0) - 1, 1), std::span(&row, 1)).tokens[0];
    ids.push_back(tok);
    out.push_back(tok);
  }
  return out;
}

std::vector<float> ModelLogprobs(const Model& m, const RequestOutput& o, double t) {
  c10::InferenceMode guard;
  std::vector<int64_t> ids(o.prompt.begin(), o.prompt.end());
  ids.insert(ids.end(), o.tokens.begin(), o.tokens.end());
  std::vector<int64_t> targets(ids.begin() + 1, ids.end());
  targets.push_back(0);
  at::Tensor lp = m.TokenLogprobs(Ids(ids), Cu(std::ssize(ids)), Ids(targets), t).cpu();
  std::vector<float> out;
  for (size_t i = 0; i < o.tokens.size(); ++i) out.push_back(lp[o.prompt.size() - 1 + i].item<float>());
  return out;
}

// Prompts of odd lengths around block and chunk boundaries, and groups sharing a prompt.
std::vector<Request> Workload(int vocab, int max_new, double temperature) {
  std::vector<Request> reqs;
  const std::vector<int> lens = {1, 3, 4, 5, 17, 40, 63};
  for (size_t i = 0; i < lens.size(); ++i) {
    reqs.push_back(Req("r" + std::to_string(i), Prompt(lens[i], i, vocab), max_new, temperature, 10 + i));
  }
  for (int g = 0; g < 2; ++g) {
    for (int j = 0; j < 4; ++j) {
      reqs.push_back(Req("g" + std::to_string(g) + "_" + std::to_string(j), Prompt(21 + 16 * g, 50 + g, vocab),
                         max_new, temperature, 100 + 4 * g + j));
    }
  }
  return reqs;
}

TEST(EngineGpu, Fp32GreedyEqualsNaiveLoopWithPrefixHitsAndChunks) {
  REQUIRE_CUDA();
  for (int variant = 0; variant < 3; ++variant) {
    const bool wide = variant != 1, fused = variant != 2;  // D=64 fused, D=32 fused, D=64 ATen ops
    SCOPED_TRACE(testing::Message() << "wide " << wide << " fused " << fused);
    Model m = GpuModel(1, wide, at::kFloat);
    auto e = MakeEngine(m, GpuConfig(true, fused));
    ASSERT_TRUE(e->uses_cuda_kernels());
    std::vector<Request> reqs = Workload(m.config().vocab_size, 12, 0.0);
    auto out = e->Generate(reqs);
    ASSERT_TRUE(out.ok()) << out.status();
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ((*out)[i].tokens, Naive(m, reqs[i])) << "request " << reqs[i].id << " wide " << wide;
      std::vector<float> ref = ModelLogprobs(m, (*out)[i], 1.0);
      for (size_t t = 0; t < ref.size(); ++t) EXPECT_NEAR((*out)[i].logprobs[t], ref[t], 2e-4);
    }
    EXPECT_GT(e->stats().prefix_hit_tokens, 0);
  }
}

TEST(EngineGpu, Fp32SampledAtTemperatureOneEqualsNaiveLoop) {
  REQUIRE_CUDA();
  Model m = GpuModel(2, true, at::kFloat);
  auto e = MakeEngine(m, GpuConfig());
  std::vector<Request> reqs = Workload(m.config().vocab_size, 10, 1.0);
  reqs[1].params.top_k = 5;
  reqs[2].params.top_p = 0.8;
  reqs[3].params.min_p = 0.05;
  auto out = e->Generate(reqs);
  ASSERT_TRUE(out.ok()) << out.status();
  int match = 0;
  for (size_t i = 0; i < reqs.size(); ++i) match += (*out)[i].tokens == Naive(m, reqs[i]);
  std::cout << "[ sampled T=1, fp32 ] " << match << " of " << reqs.size()
            << " requests equal the naive loop" << std::endl;
  EXPECT_EQ(match, static_cast<int>(reqs.size()));
}

TEST(EngineGpu, GraphsAndEagerStepsAgree) {
  REQUIRE_CUDA();
  Model m = GpuModel(3, true, at::kFloat);
  auto graphs = MakeEngine(m, GpuConfig(true));
  auto eager = MakeEngine(m, GpuConfig(false));
  std::vector<Request> reqs = Workload(m.config().vocab_size, 16, 0.0);
  auto a = graphs->Generate(reqs);
  auto b = eager->Generate(reqs);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ((*a)[i].tokens, (*b)[i].tokens) << reqs[i].id;
    for (size_t t = 0; t < (*a)[i].logprobs.size(); ++t) {
      EXPECT_NEAR((*a)[i].logprobs[t], (*b)[i].logprobs[t], 1e-4);
    }
  }
}

TEST(EngineGpu, WeightUpdatesKeepCapturedGraphsValid) {
  REQUIRE_CUDA();
  Model a = GpuModel(4, true, at::kFloat), b = GpuModel(5, true, at::kFloat);
  auto e = MakeEngine(a, GpuConfig());
  std::vector<Request> reqs = Workload(a.config().vocab_size, 8, 0.0);
  auto first = e->Generate(reqs);  // captures the decode graphs
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(e->UpdateWeights(b.weights(), 1).ok());
  auto second = e->Generate(reqs);
  ASSERT_TRUE(second.ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ((*second)[i].tokens, Naive(b, reqs[i])) << reqs[i].id;
    EXPECT_EQ((*second)[i].versions, std::vector<int64_t>(8, 1));
  }
  // Release and reacquire the KV cache (a colocated trainer's turn): graphs are re-captured.
  e->Pause(PauseMode::kKeep);
  ASSERT_TRUE(e->ReleaseMemory(false).ok());
  ASSERT_TRUE(e->ReacquireMemory().ok());
  e->Resume();
  auto third = e->Generate(reqs);
  ASSERT_TRUE(third.ok());
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ((*third)[i].tokens, (*second)[i].tokens);
}

TEST(EngineGpu, Bf16LogprobsAgreeWithTheModelForward) {
  REQUIRE_CUDA();
  for (int variant = 0; variant < 3; ++variant) {
    const bool wide = variant != 1, fused = variant != 2;
    Model m = GpuModel(6, wide, at::kBFloat16);
    EngineConfig c = GpuConfig(true, fused);
    auto e = MakeEngine(m, c);
    ASSERT_EQ(e->config().dtype, at::kBFloat16);
    std::vector<Request> reqs = Workload(m.config().vocab_size, 24, 1.0);
    auto out = e->Generate(reqs);
    ASSERT_TRUE(out.ok()) << out.status();
    double sum_abs = 0, max_abs = 0, k1 = 0, k3 = 0;
    int64_t n = 0;
    for (const RequestOutput& o : *out) {
      std::vector<float> ref = ModelLogprobs(m, o, 1.0);
      for (size_t t = 0; t < ref.size(); ++t) {
        const double d = double(o.logprobs[t]) - ref[t];  // log p_engine - log p_model
        sum_abs += std::abs(d);
        max_abs = std::max(max_abs, std::abs(d));
        k1 += d;                       // E_{x ~ engine}[log p_e - log p_m] = KL(engine || model)
        k3 += std::expm1(-d) + d;      // the same KL, non-negative estimator
        ++n;
      }
    }
    std::cout << "[ bf16 " << (wide ? "D=64 G=7" : "D=32 G=4") << (fused ? " fused" : " ATen ops") << " ] tokens " << n
              << " mean|dlogprob| " << sum_abs / n << " max|dlogprob| " << max_abs
              << " KL/token (k1) " << k1 / n << " (k3) " << k3 / n << std::endl;
    EXPECT_LT(sum_abs / n, 0.05);
    EXPECT_LT(max_abs, 0.5);
    EXPECT_LT(std::abs(k3 / n), 0.01);
  }
}

TEST(EngineGpu, Bf16EngineTakesFp32UpdatesAndGreedyMostlyMatches) {
  REQUIRE_CUDA();
  Model fp = GpuModel(7, true, at::kFloat);
  Model bf = GpuModel(7, true, at::kBFloat16);
  EngineConfig c = GpuConfig();
  c.dtype = at::kBFloat16;
  auto e = MakeEngine(fp, c);  // fp32 weights in, served in bf16
  ASSERT_TRUE(e->UpdateWeights(fp.weights(), 3).ok());  // fp32 update, rounded on copy
  std::vector<Request> reqs = Workload(fp.config().vocab_size, 12, 0.0);
  auto out = e->Generate(reqs);
  ASSERT_TRUE(out.ok());
  int match = 0;
  for (size_t i = 0; i < reqs.size(); ++i) match += (*out)[i].tokens == Naive(bf, reqs[i]);
  std::cout << "[ greedy bf16 ] " << match << " of " << reqs.size()
            << " requests equal the naive bf16 loop token for token" << std::endl;
  EXPECT_GE(match * 2, static_cast<int>(reqs.size()));
}

TEST(EngineGpu, KvCacheSizedFromFreeMemory) {
  REQUIRE_CUDA();
  Model m = GpuModel(8, false, at::kBFloat16);
  EngineConfig c = GpuConfig();
  c.gpu_memory_utilization = 0.02;
  auto e = MakeEngine(m, c);
  EXPECT_GT(e->config().num_blocks, 512);
  c.gpu_memory_utilization = 1.5;
  EXPECT_FALSE(Engine::Create(m.config(), m.weights(), c).ok());
}

}  // namespace
}  // namespace tidal::rollout
