// The rollout CUDA kernels (rollout/cuda/kernels.h) against LibTorch references: paged
// attention over odd lengths, GQA ratios 1-8, block boundaries, prefix hits and chunks, with
// and without split-KV (bit-identical); KV
// append by slot mapping; GPU sampling (greedy, logprob, filters, frequencies, seeds).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#ifdef TIDAL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAStream.h>

#include "core/cuda/kernel_dtype.h"
#include "rollout/cuda/kernels.h"
#include "rollout/sampler.h"
#endif

namespace tidal::rollout {
namespace {

#ifndef TIDAL_WITH_CUDA
TEST(KernelsGpu, Skipped) { GTEST_SKIP() << "built without CUDA"; }
#else

bool HaveCuda() { return at::hasCUDA() && at::cuda::device_count() > 0; }
#define REQUIRE_CUDA() \
  if (!HaveCuda()) GTEST_SKIP() << "no CUDA device"

void* Stream() { return at::cuda::getCurrentCUDAStream().stream(); }

struct AttnCase {
  at::ScalarType dtype;
  int64_t head_dim, q_heads, kv_heads, block_size;
};

// Sequences (context, chunk): decode rows (chunk 1), whole prompts (chunk == context), chunks
// after a cached prefix (prefix hits / chunked prefill); contexts straddle block boundaries.
const std::vector<std::pair<int, int>> kSeqs = {{1, 1},   {15, 1},  {16, 1},  {17, 1},  {33, 33},
                                                 {7, 7},   {40, 9},  {129, 1}, {130, 65}, {300, 1},
                                                 {513, 3}, {64, 16}, {1100, 1}, {700, 5}};

void CheckAttention(const AttnCase& c) {
  c10::InferenceMode guard;
  at::manual_seed(7);
  const auto dev = at::TensorOptions().device(at::kCUDA);
  const int64_t bs = c.block_size, hkv = c.kv_heads, hq = c.q_heads, d = c.head_dim;
  int64_t blocks_needed = 0, max_blocks = 0, tokens = 0;
  for (auto [ctx, n] : kSeqs) {
    blocks_needed += (ctx + bs - 1) / bs;
    max_blocks = std::max<int64_t>(max_blocks, (ctx + bs - 1) / bs);
    tokens += n;
  }
  const int64_t num_blocks = blocks_needed + 5;
  // Blocks handed out in a shuffled order so tables are not contiguous.
  at::Tensor p = at::randperm(num_blocks, at::kLong);
  std::vector<int64_t> perm(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + num_blocks);
  at::Tensor kc = at::randn({num_blocks, bs, hkv, d}, dev.dtype(at::kFloat)).to(c.dtype);
  at::Tensor vc = at::randn({num_blocks, bs, hkv, d}, dev.dtype(at::kFloat)).to(c.dtype);
  at::Tensor q = at::randn({tokens, hq, d}, dev.dtype(at::kFloat)).to(c.dtype);
  std::vector<int32_t> tables(kSeqs.size() * max_blocks, 0), token_seq, kv_len;
  size_t next = 0;
  for (size_t s = 0; s < kSeqs.size(); ++s) {
    auto [ctx, n] = kSeqs[s];
    for (int64_t j = 0; j < (ctx + bs - 1) / bs; ++j) tables[s * max_blocks + j] = static_cast<int32_t>(perm[next++]);
    for (int i = 0; i < n; ++i) {
      token_seq.push_back(static_cast<int32_t>(s));
      kv_len.push_back(ctx - n + i + 1);
    }
  }
  token_seq.push_back(0);  // one padding row: attends to nothing
  kv_len.push_back(0);
  at::Tensor qp = at::cat({q, at::randn({1, hq, d}, dev.dtype(at::kFloat)).to(c.dtype)});
  at::Tensor t_tables = at::tensor(tables, at::kInt).to(at::kCUDA);
  at::Tensor t_seq = at::tensor(token_seq, at::kInt).to(at::kCUDA);
  at::Tensor t_len = at::tensor(kv_len, at::kInt).to(at::kCUDA);
  at::Tensor out = at::full({tokens + 1, hq, d}, 7.0, dev.dtype(c.dtype));
  cuda::PagedAttentionArgs a;
  a.dtype = tidal::cuda::KernelDtype(c.dtype);
  a.q = qp.data_ptr();
  a.k_cache = kc.data_ptr();
  a.v_cache = vc.data_ptr();
  a.out = out.data_ptr();
  a.block_tables = t_tables.data_ptr<int32_t>();
  a.table_stride = max_blocks;
  a.token_seq = t_seq.data_ptr<int32_t>();
  a.kv_len = t_len.data_ptr<int32_t>();
  a.num_tokens = tokens + 1;
  a.q_heads = hq;
  a.kv_heads = hkv;
  a.head_dim = d;
  a.block_size = bs;
  a.scale = static_cast<float>(1.0 / std::sqrt(double(d)));
  cuda::PagedAttention(a, Stream());

  // Split-KV launches fold the same chunks in the same order: bit-identical to no split.
  const int64_t max_chunks = cuda::PagedAttentionChunks(max_blocks * bs);
  at::Tensor workspace = at::empty({cuda::PagedAttentionWorkspaceFloats(tokens + 1, hq, d, max_blocks * bs)},
                                   dev.dtype(at::kFloat));
  for (int splits : {2, 3, static_cast<int>(max_chunks)}) {
    at::Tensor split_out = at::full_like(out, 7.0);
    cuda::PagedAttentionArgs sa = a;
    sa.out = split_out.data_ptr();
    sa.num_splits = splits;
    sa.max_chunks = static_cast<int32_t>(max_chunks);
    sa.workspace = workspace.data_ptr<float>();
    cuda::PagedAttention(sa, Stream());
    ASSERT_TRUE(at::equal(split_out, out)) << splits << " splits differ from none: max |diff| "
                                           << (split_out.to(at::kFloat) - out.to(at::kFloat)).abs().max().item<double>();
  }

  // Reference: gather each sequence's keys in fp32 and attend with plain ops.
  at::Tensor kf = kc.to(at::kFloat).view({num_blocks * bs, hkv, d});
  at::Tensor vf = vc.to(at::kFloat).view({num_blocks * bs, hkv, d});
  at::Tensor outf = out.to(at::kFloat).cpu();
  const double tol = c.dtype == at::kFloat ? 2e-5 : 2e-2;
  int64_t row = 0;
  for (size_t s = 0; s < kSeqs.size(); ++s) {
    auto [ctx, n] = kSeqs[s];
    std::vector<int64_t> slots;
    for (int i = 0; i < ctx; ++i) slots.push_back(int64_t{tables[s * max_blocks + i / bs]} * bs + i % bs);
    at::Tensor idx = at::tensor(slots, at::kLong).to(at::kCUDA);
    at::Tensor ks = kf.index_select(0, idx).repeat_interleave(hq / hkv, 1);  // [ctx, hq, d]
    at::Tensor vs = vf.index_select(0, idx).repeat_interleave(hq / hkv, 1);
    for (int i = 0; i < n; ++i, ++row) {
      const int len = ctx - n + i + 1;
      at::Tensor qi = q[row].to(at::kFloat);                                  // [hq, d]
      at::Tensor sc = at::einsum("hd,khd->hk", {qi, ks.narrow(0, 0, len)}) * a.scale;
      at::Tensor ref = at::einsum("hk,khd->hd", {at::softmax(sc, 1), vs.narrow(0, 0, len)}).cpu();
      const double err = (ref - outf[row]).abs().max().item<double>();
      ASSERT_LT(err, tol) << "seq " << s << " (context " << ctx << ", chunk " << n << ") query " << i
                          << " dtype " << c.dtype << " D " << d << " group " << hq / hkv;
    }
  }
  EXPECT_EQ(outf[tokens].abs().max().item<double>(), 0.0) << "padding row must be zeros";
}

TEST(KernelsGpu, PagedAttentionMatchesReference) {
  REQUIRE_CUDA();
  for (at::ScalarType dt : {at::kBFloat16, at::kFloat, at::kHalf}) {
    for (int64_t d : {64, 128, 32}) {
      for (int64_t g : {1, 2, 3, 4, 7, 8}) {
        for (int64_t bs : {16, 5}) {
          if (dt != at::kBFloat16 && (bs != 16 || (g != 1 && g != 7))) continue;  // keep it quick
          SCOPED_TRACE(testing::Message() << "dtype " << dt << " D " << d << " group " << g << " block " << bs);
          CheckAttention({dt, d, 2 * g, 2, bs});
        }
      }
    }
  }
}

TEST(KernelsGpu, KvAppendWritesSlotsAndSkipsPadding) {
  REQUIRE_CUDA();
  c10::InferenceMode guard;
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const int64_t slots_total = 64, hkv = 2, d = 64, t = 9;
  at::Tensor kc = at::zeros({slots_total, hkv, d}, opts), vc = at::zeros({slots_total, hkv, d}, opts);
  at::Tensor k = at::randn({t, hkv, d}, opts), v = at::randn({t, hkv, d}, opts);
  std::vector<int64_t> slots = {3, 17, 63, -1, 0, 31, -1, 32, 5};
  at::Tensor s = at::tensor(slots, at::kLong).to(at::kCUDA);
  cuda::KvAppend(cuda::Dtype::kBF16, k.data_ptr(), v.data_ptr(), kc.data_ptr(), vc.data_ptr(),
                 s.data_ptr<int64_t>(), t, hkv, d, Stream());
  at::Tensor kr = at::zeros_like(kc), vr = at::zeros_like(vc);
  for (int64_t i = 0; i < t; ++i) {
    if (slots[i] < 0) continue;
    kr[slots[i]].copy_(k[i]);
    vr[slots[i]].copy_(v[i]);
  }
  EXPECT_TRUE(at::equal(kc, kr));
  EXPECT_TRUE(at::equal(vc, vr));
}

// Sampling: the kernel is reached through Sample() with CUDA logits.
SampleResult SampleOne(const at::Tensor& logits_row, const SamplingParams& p, uint64_t seed, int64_t index) {
  SampleRow row{&p, seed, index};
  return Sample(logits_row.view({1, -1}), std::span(&row, 1));
}

// bf16 logits (what the engine's LM head returns) are read as they are: the same tokens and
// logprobs as their exact fp32 widening, for greedy, filtered and plain draws.
TEST(KernelsGpu, SamplingReadsBf16LogitsAsTheirWidening) {
  REQUIRE_CUDA();
  c10::InferenceMode guard;
  at::manual_seed(5);
  const int64_t r = 24, v = 151936;
  at::Tensor bf = (at::randn({r, v}, at::kFloat) * 3).to(at::kCUDA).to(at::kBFloat16);
  std::vector<SamplingParams> params(r);
  std::vector<SampleRow> rows;
  for (int64_t i = 0; i < r; ++i) {
    params[i].temperature = i % 4 == 0 ? 0.0 : 0.7 + 0.1 * (i % 5);
    if (i % 4 == 1) params[i].top_k = 50;
    if (i % 4 == 2) params[i].top_p = 0.8;
    rows.push_back({&params[i], 77 + static_cast<uint64_t>(i), i});
  }
  SampleResult a = Sample(bf, rows);
  SampleResult b = Sample(bf.to(at::kFloat), rows);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.logprobs, b.logprobs);
}

TEST(KernelsGpu, SamplingGreedyAndLogprobs) {
  REQUIRE_CUDA();
  c10::InferenceMode guard;
  at::manual_seed(3);
  const int64_t r = 37, v = 151936;
  at::Tensor logits = (at::randn({r, v}, at::kFloat) * 3).to(at::kCUDA);
  std::vector<SamplingParams> params(r);
  std::vector<SampleRow> rows;
  for (int64_t i = 0; i < r; ++i) {
    params[i].temperature = i % 3 == 0 ? 0.0 : 0.5 + 0.1 * (i % 7);
    if (i % 5 == 1) params[i].top_k = 20;
    if (i % 5 == 2) params[i].top_p = 0.9;
    if (i % 5 == 3) params[i].min_p = 0.05;
    rows.push_back({&params[i], 1000 + static_cast<uint64_t>(i), i});
  }
  SampleResult res = Sample(logits, rows);
  at::Tensor argmax = logits.argmax(1).cpu();
  for (int64_t i = 0; i < r; ++i) {
    const double inv_t = params[i].Greedy() ? 1.0 : 1.0 / params[i].temperature;
    at::Tensor lp = at::log_softmax(logits[i].to(at::kDouble) * inv_t, 0).cpu();
    const int32_t tok = res.tokens[i];
    ASSERT_GE(tok, 0);
    ASSERT_LT(tok, v);
    EXPECT_NEAR(res.logprobs[i], lp[tok].item<double>(), 2e-4) << "row " << i;
    if (params[i].Greedy()) EXPECT_EQ(tok, argmax[i].item<int64_t>()) << "row " << i;
    if (params[i].top_k == 20) {
      at::Tensor top = std::get<1>(logits[i].topk(20)).cpu();
      EXPECT_TRUE((top == tok).any().item<bool>()) << "row " << i << " drew outside the top 20";
    }
    if (params[i].min_p > 0) {
      EXPECT_GE(lp[tok].item<double>(), std::log(0.05) + lp.max().item<double>() - 1e-4);
    }
  }
  // Batch independence: each row alone draws the same token.
  for (int64_t i = 0; i < r; i += 6) {
    SampleResult one = SampleOne(logits[i], params[i], rows[i].seed, rows[i].token_index);
    EXPECT_EQ(one.tokens[0], res.tokens[i]) << "row " << i;
  }
}

TEST(KernelsGpu, SamplingFrequenciesFollowTheFilteredDistribution) {
  REQUIRE_CUDA();
  c10::InferenceMode guard;
  // p over 6 tokens (plus a long tail of -inf-ish logits): .40 .25 .15 .10 .06 .04
  std::vector<double> probs = {0.10, 0.40, 0.04, 0.25, 0.15, 0.06};
  const int64_t v = 1000, n = 20000;
  at::Tensor row = at::full({v}, -60.0, at::kFloat);
  for (size_t i = 0; i < probs.size(); ++i) row[i] = std::log(probs[i]);
  at::Tensor logits = row.to(at::kCUDA).unsqueeze(0).expand({n, v}).contiguous();
  struct Case {
    SamplingParams p;
    std::vector<double> expect;
  };
  std::vector<Case> cases(4);
  cases[0].p.temperature = 1.0;
  cases[0].expect = probs;
  cases[1].p.temperature = 1.0;
  cases[1].p.top_k = 3;  // .40 .25 .15 renormalised
  cases[1].expect = {0, 0.40 / 0.8, 0, 0.25 / 0.8, 0.15 / 0.8, 0};
  cases[2].p.temperature = 1.0;
  cases[2].p.top_p = 0.7;  // .40 + .25 = .65 < .7, so .15 is included
  cases[2].expect = {0, 0.40 / 0.8, 0, 0.25 / 0.8, 0.15 / 0.8, 0};
  cases[3].p.temperature = 1.0;
  cases[3].p.min_p = 0.3;  // p >= .12: .40 .25 .15
  cases[3].expect = {0, 0.40 / 0.8, 0, 0.25 / 0.8, 0.15 / 0.8, 0};
  for (size_t c = 0; c < cases.size(); ++c) {
    std::vector<SampleRow> rows;
    for (int64_t i = 0; i < n; ++i) rows.push_back({&cases[c].p, 42 + c, i});
    SampleResult res = Sample(logits, rows);
    std::vector<double> freq(v, 0.0);
    for (int32_t t : res.tokens) freq[t] += 1.0 / n;
    for (size_t i = 0; i < probs.size(); ++i) {
      EXPECT_NEAR(freq[i], cases[c].expect[i], 0.015) << "case " << c << " token " << i;
    }
    double tail = 0;
    for (int64_t i = probs.size(); i < v; ++i) tail += freq[i];
    EXPECT_EQ(tail, 0.0) << "case " << c;
  }
}

TEST(KernelsGpu, SamplingIsSeededAndPositionDependent) {
  REQUIRE_CUDA();
  c10::InferenceMode guard;
  at::Tensor logits = at::zeros({1, 50000}, at::kFloat).to(at::kCUDA);  // uniform
  SamplingParams p;
  p.temperature = 1.0;
  const int32_t a = SampleOne(logits[0], p, 5, 0).tokens[0];
  EXPECT_EQ(a, SampleOne(logits[0], p, 5, 0).tokens[0]);
  int differ = 0;
  for (int i = 1; i < 20; ++i) differ += SampleOne(logits[0], p, 5, i).tokens[0] != a;
  for (uint64_t s = 6; s < 26; ++s) differ += SampleOne(logits[0], p, s, 0).tokens[0] != a;
  EXPECT_GE(differ, 36);
}

#endif  // TIDAL_WITH_CUDA

}  // namespace
}  // namespace tidal::rollout
