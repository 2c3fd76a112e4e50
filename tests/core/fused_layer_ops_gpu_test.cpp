// The fused CUDA layer ops (core/cuda/fused_layer_ops.h) against the ATen composites of
// core/model.cpp they replace, on the same inputs: forward and backward of each op in bf16, fp16
// and fp32, odd shapes (hidden not a multiple of the vector width, T = 1, GQA ratios, strided
// inputs), and whole decoder layers fused vs unfused (output and every weight grad).
//
// Tolerances, and why:
// - RoPE and SwiGLU do the composite's arithmetic in the same order with the same roundings, so
//   they are expected bit for bit; the check allows 1 ulp of the element type so that a libm
//   difference (cosf/expf builds) cannot fail it, and reports how many elements were not exact.
// - RMSNorm's mean of squares is a reduction whose summation order differs from ATen's, so the
//   fp32 rstd can differ in its last bit, which can move a rounded result by 1 ulp: forward within
//   1 ulp (and nearly all elements exact); the backward's fp32 reductions likewise.
// - Whole layers: the fused layer runs q/k/v and gate/up as one GEMM each, whose cuBLAS kernels
//   may sum in another order than the separate GEMMs, so bf16 layers agree to a relative error,
//   not bits.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <cmath>
#include <iostream>

#include "core/cuda/fused_layer_ops.h"
#include "core/cuda_devices.h"
#include "core/model.h"

namespace tidal {
namespace {

#define SKIP_WITHOUT_CUDA() \
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device visible: the fused layer ops need one"

// Turns the fused path off (the ATen composites) for the scope, restoring the previous setting.
class ScopedFused {
 public:
  explicit ScopedFused(bool on) : prev_(FusedLayerOpsEnabled()) { SetFusedLayerOpsEnabled(on); }
  ~ScopedFused() { SetFusedLayerOpsEnabled(prev_); }

 private:
  bool prev_;
};

#ifdef TIDAL_WITH_CUDA

at::TensorOptions Cuda(at::ScalarType t) { return at::TensorOptions().device(at::kCUDA).dtype(t); }

at::Tensor Randn(std::vector<int64_t> shape, at::ScalarType t, double scale = 1.0) {
  return (at::randn(shape, Cuda(at::kFloat)) * scale).to(t);
}

// Bit patterns mapped to integers that order like the values, so |a - b| counts ulps.
at::Tensor OrderedBits(const at::Tensor& x) {
  at::Tensor c = x.detach().cpu().contiguous();
  at::Tensor bits;
  int64_t mag_mask;
  if (c.scalar_type() == at::kFloat) {
    bits = c.view(at::kInt).to(at::kLong);
    mag_mask = 0x7fffffff;
  } else {
    bits = c.view(at::kShort).to(at::kLong);
    mag_mask = 0x7fff;
  }
  at::Tensor mag = at::bitwise_and(bits, mag_mask);
  return at::where(bits < 0, -mag, mag);
}

struct UlpReport {
  int64_t max_ulp = 0;
  int64_t inexact = 0;
  int64_t total = 0;
};

UlpReport Ulps(const at::Tensor& got, const at::Tensor& want) {
  EXPECT_EQ(got.sizes(), want.sizes());
  EXPECT_EQ(got.scalar_type(), want.scalar_type());
  at::Tensor d = (OrderedBits(got) - OrderedBits(want)).abs();
  UlpReport r;
  r.total = d.numel();
  if (r.total == 0) return r;
  r.max_ulp = d.max().item<int64_t>();
  r.inexact = (d != 0).sum().item<int64_t>();
  return r;
}

void ExpectWithinUlps(const at::Tensor& got, const at::Tensor& want, int64_t ulps, const std::string& what) {
  const UlpReport r = Ulps(got, want);
  EXPECT_LE(r.max_ulp, ulps) << what << ": " << r.inexact << " of " << r.total << " elements differ";
  if (r.inexact > 0) std::cout << "[ info ] " << what << ": " << r.inexact << " of " << r.total
                               << " elements not bit-exact (max " << r.max_ulp << " ulp)\n";
}

// |got - want| <= rtol * |want| + atol_frac * max|want|, elementwise (fp32 reductions in another
// order, cancellation near zero).
void ExpectClose(const at::Tensor& got, const at::Tensor& want, double rtol, double atol_frac,
                 const std::string& what) {
  at::Tensor g = got.detach().to(at::kDouble), w = want.detach().to(at::kDouble);
  ASSERT_EQ(g.sizes(), w.sizes()) << what;
  const double scale = w.numel() ? w.abs().max().item<double>() : 0.0;
  at::Tensor excess = (g - w).abs() - (w.abs() * rtol + atol_frac * scale);
  const double worst = excess.numel() ? excess.max().item<double>() : 0.0;
  EXPECT_LE(worst, 0.0) << what << ": max |diff| " << (g - w).abs().max().item<double>() << ", scale " << scale;
}

const char* Name(at::ScalarType t) { return t == at::kBFloat16 ? "bf16" : t == at::kHalf ? "fp16" : "fp32"; }

// ---------- RMSNorm ----------

TEST(FusedLayerOpsGpu, RmsNormForwardAndBackwardMatchComposite) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(1);
  const std::vector<std::vector<int64_t>> shapes = {{1, 1536}, {37, 1536}, {64, 1000}, {5, 8192},
                                                    {3, 7},    {2, 50, 128}, {1, 3}, {300, 96}};
  for (at::ScalarType dt : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (const auto& shape : shapes) {
      const std::string what = std::string(Name(dt)) + " " + c10::str(at::IntArrayRef(shape));
      const int64_t hidden = shape.back();
      at::Tensor x = Randn(shape, dt, 2.0).requires_grad_(true);
      at::Tensor w = (1 + Randn({hidden}, at::kFloat, 0.1)).to(dt).requires_grad_(true);
      at::Tensor dy = Randn(shape, dt);
      at::Tensor want, want_dx, want_dw;
      {
        ScopedFused off(false);
        want = RmsNorm(x, w, 1e-6);
        std::tie(want_dx, want_dw) = [&] {
          auto g = torch::autograd::grad({want}, {x, w}, {dy});
          return std::make_pair(g[0], g[1]);
        }();
      }
      at::Tensor got = cuda::FusedRmsNorm(x, w, 1e-6);
      auto g = torch::autograd::grad({got}, {x, w}, {dy});
      if (dt == at::kFloat) {
        ExpectClose(got, want, 1e-5, 1e-6, what + " y");
        ExpectClose(g[0], want_dx, 1e-4, 1e-5, what + " dx");
        ExpectClose(g[1], want_dw, 1e-4, 1e-5, what + " dw");
      } else {
        ExpectWithinUlps(got, want, 1, what + " y");
        const UlpReport r = Ulps(got, want);
        EXPECT_LE(r.inexact, std::max<int64_t>(1, r.total / 100)) << what << ": most elements should be exact";
        // dx: one rounding of an fp32 result each side; dw: an fp32 sum over rows in another order.
        ExpectClose(g[0], want_dx, 1.0 / 128, 1e-3, what + " dx");
        ExpectClose(g[1], want_dw, 1.0 / 64, 2e-3, what + " dw");
      }
    }
  }
}

TEST(FusedLayerOpsGpu, RmsNormWeightGradSumsManyRows) {
  SKIP_WITHOUT_CUDA();
  // More rows than the backward's partial-sum blocks, so both reduction stages carry real sums.
  at::manual_seed(2);
  at::Tensor x = Randn({20000, 256}, at::kBFloat16).requires_grad_(true);
  at::Tensor w = Randn({256}, at::kBFloat16).requires_grad_(true);
  at::Tensor dy = Randn({20000, 256}, at::kBFloat16);
  at::Tensor got = torch::autograd::grad({cuda::FusedRmsNorm(x, w, 1e-5)}, {w}, {dy})[0];
  // fp64 reference of the same rounded products: sum over rows of round(dy * round(x * r)).
  at::Tensor xd = x.detach().to(at::kDouble);
  at::Tensor n = (xd * at::rsqrt(xd.pow(2).mean(-1, true) + 1e-5)).to(at::kBFloat16).to(at::kDouble);
  at::Tensor want = (dy.to(at::kDouble) * n).sum(0);
  ExpectClose(got, want, 1.0 / 128, 1e-3, "dw over 20000 rows");
}

TEST(FusedLayerOpsGpu, RmsNormIsWhatModelUsesOnCudaBf16Only) {
  SKIP_WITHOUT_CUDA();
  at::Tensor w = at::ones({64}, Cuda(at::kBFloat16)).requires_grad_(true);
  at::Tensor x = Randn({4, 64}, at::kBFloat16);
  {
    ScopedFused on(true);
    EXPECT_NE(RmsNorm(x, w, 1e-6).grad_fn()->name().find("RmsNormFn"), std::string::npos);
    at::Tensor w32 = at::ones({64}, Cuda(at::kFloat)).requires_grad_(true);
    EXPECT_EQ(RmsNorm(x.to(at::kFloat), w32, 1e-6).grad_fn()->name().find("RmsNormFn"), std::string::npos)
        << "fp32 keeps the ATen composite";
  }
  ScopedFused off(false);
  EXPECT_EQ(RmsNorm(x, w, 1e-6).grad_fn()->name().find("RmsNormFn"), std::string::npos);
}

// ---------- RoPE ----------

at::Tensor Positions(int64_t t, int64_t max_pos) {
  return at::randint(0, max_pos, {t}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
}

at::Tensor InvFreq(int64_t d, double theta) {
  ModelConfig c;
  c.hidden_size = d;
  c.num_attention_heads = 1;
  c.rope_theta = theta;
  return RopeInvFreq(c, at::kCUDA);
}

struct RopeCase {
  int64_t t, hq, hkv, d;
};

TEST(FusedLayerOpsGpu, RopeMatchesApplyRopeBothWays) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(3);
  const std::vector<RopeCase> cases = {{1, 12, 2, 128}, {37, 12, 2, 128}, {16, 4, 4, 64}, {9, 6, 1, 6},
                                       {33, 8, 0, 128}, {5, 2, 1, 10}};
  for (at::ScalarType dt : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (const RopeCase& rc : cases) {
      const std::string what = c10::str(Name(dt), " T=", rc.t, " Hq=", rc.hq, " Hkv=", rc.hkv, " D=", rc.d);
      at::Tensor pos = Positions(rc.t, 32768), inv = InvFreq(rc.d, 1e6);
      // q as a column block of a wider tensor: a strided input, as the packed projection gives.
      at::Tensor wide = Randn({rc.t, (rc.hq + 1) * rc.d}, dt).requires_grad_(true);
      at::Tensor q = wide.narrow(1, rc.d, rc.hq * rc.d).view({rc.t, rc.hq, rc.d});
      at::Tensor k = Randn({rc.t, rc.hkv, rc.d}, dt).requires_grad_(true);
      at::Tensor gq = Randn({rc.t, rc.hq, rc.d}, dt), gk = Randn({rc.t, rc.hkv, rc.d}, dt);
      at::Tensor want_q, want_k, want_dwide, want_dk;
      {
        ScopedFused off(false);
        want_q = ApplyRope(q, pos, inv);
        want_k = ApplyRope(k, pos, inv);
        auto g = torch::autograd::grad({want_q, want_k}, {wide, k}, {gq, gk});
        want_dwide = g[0];
        want_dk = g[1];
      }
      auto got = cuda::FusedRope(q, k, pos, inv);
      auto g = torch::autograd::grad({got[0], got[1]}, {wide, k}, {gq, gk});
      ExpectWithinUlps(got[0], want_q, 1, what + " q");
      ExpectWithinUlps(got[1], want_k, 1, what + " k");
      ExpectWithinUlps(g[0], want_dwide, 1, what + " dq");
      ExpectWithinUlps(g[1], want_dk, 1, what + " dk");
    }
  }
}

TEST(FusedLayerOpsGpu, PackedQkvRopeMatchesSplitAndApplyRope) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(4);
  const std::vector<RopeCase> cases = {{1, 12, 2, 128}, {64, 12, 2, 128}, {7, 4, 4, 64}, {3, 6, 3, 6}};
  for (at::ScalarType dt : {at::kBFloat16, at::kFloat}) {
    for (const RopeCase& rc : cases) {
      const std::string what = c10::str(Name(dt), " T=", rc.t, " Hq=", rc.hq, " Hkv=", rc.hkv, " D=", rc.d);
      const int64_t t = rc.t, hq = rc.hq, hkv = rc.hkv, d = rc.d;
      at::Tensor pos = Positions(t, 4096), inv = InvFreq(d, 1e4);
      at::Tensor qkv = Randn({t, (hq + 2 * hkv) * d}, dt).requires_grad_(true);
      at::Tensor gq = Randn({t, hq, d}, dt), gk = Randn({t, hkv, d}, dt), gv = Randn({t, hkv, d}, dt);
      std::vector<at::Tensor> want;
      at::Tensor want_grad;
      {
        ScopedFused off(false);
        want = {ApplyRope(qkv.narrow(1, 0, hq * d).view({t, hq, d}), pos, inv),
                ApplyRope(qkv.narrow(1, hq * d, hkv * d).view({t, hkv, d}), pos, inv),
                qkv.narrow(1, (hq + hkv) * d, hkv * d).view({t, hkv, d})};
        want_grad = torch::autograd::grad(want, {qkv}, {gq, gk, gv})[0];
      }
      auto got = cuda::FusedQkvRope(qkv, pos, inv, hq, hkv, d);
      for (const at::Tensor& o : got) EXPECT_TRUE(o.is_contiguous()) << what;
      ExpectWithinUlps(got[0], want[0], 1, what + " q");
      ExpectWithinUlps(got[1], want[1], 1, what + " k");
      EXPECT_TRUE(at::equal(got[2], want[2])) << what << " v is copied through";
      at::Tensor grad = torch::autograd::grad({got[0], got[1], got[2]}, {qkv}, {gq, gk, gv})[0];
      ExpectWithinUlps(grad, want_grad, 1, what + " dqkv");
    }
  }
}

// ---------- SwiGLU ----------

TEST(FusedLayerOpsGpu, SwiGluMatchesSiluTimesUp) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(5);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 8960}, {33, 8960}, {17, 13}, {4, 64}, {1, 1}};
  for (at::ScalarType dt : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (auto [rows, inter] : shapes) {
      const std::string what = c10::str(Name(dt), " rows=", rows, " I=", inter);
      at::Tensor gu = Randn({rows, 2 * inter}, dt, 3.0).requires_grad_(true);
      at::Tensor dy = Randn({rows, inter}, dt);
      at::Tensor want = at::silu(gu.narrow(1, 0, inter)) * gu.narrow(1, inter, inter);
      at::Tensor want_grad = torch::autograd::grad({want}, {gu}, {dy})[0];
      at::Tensor got = cuda::FusedSwiGlu(gu);
      at::Tensor grad = torch::autograd::grad({got}, {gu}, {dy})[0];
      ExpectWithinUlps(got, want, 1, what + " out");
      ExpectWithinUlps(grad, want_grad, 1, what + " dgate_up");
    }
  }
}

// ---------- whole decoder layers ----------

ModelConfig LayerConfig(bool qwen3) {
  ModelConfig c;
  c.model_type = qwen3 ? "qwen3" : "qwen2";
  c.vocab_size = 64;
  c.hidden_size = 256;
  c.intermediate_size = 704;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = qwen3 ? 64 : 0;
  c.attention_bias = !qwen3;
  c.qk_norm = qwen3;
  c.rope_theta = 1e6;
  return c;
}

// ||got - want|| / ||want||
double RelErr(const at::Tensor& got, const at::Tensor& want) {
  at::Tensor g = got.detach().to(at::kDouble), w = want.detach().to(at::kDouble);
  return ((g - w).norm() / w.norm().clamp_min(1e-30)).item<double>();
}

void CheckLayer(bool qwen3, at::ScalarType dt) {
  const ModelConfig c = LayerConfig(qwen3);
  Model m = Model::RandomInit(c, 9, dt);
  NamedTensors w;
  for (auto& [name, t] : m.weights()) {
    // Non-trivial norm weights and biases, so their grads and roundings are exercised.
    at::Tensor v = t.to(at::kCUDA);
    if (name.find("norm") != std::string::npos || name.find("bias") != std::string::npos) {
      v = (v.to(at::kFloat) + at::randn(v.sizes(), Cuda(at::kFloat)) * 0.1).to(dt);
    }
    w.emplace(name, v.requires_grad_(true));
  }
  const LayerWeights lw = LayerView(w, 0);
  at::Tensor cu = at::tensor(std::vector<int64_t>{0, 40, 41, 97}, at::kLong);
  const int64_t t = 97;
  at::Tensor positions = PackedPositions(cu, t).to(at::kCUDA);
  AttentionFn attn = [&cu](int64_t, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    return VarlenCausalAttention(q, k, v, cu);
  };
  at::Tensor hidden = Randn({t, c.hidden_size}, dt).requires_grad_(true);
  at::Tensor dy = Randn({t, c.hidden_size}, dt);
  std::vector<at::Tensor> inputs = {hidden};
  std::vector<std::string> names = {"hidden"};
  for (auto& [name, tensor] : w) {
    if (name.rfind("model.layers.0.", 0) == 0) {
      inputs.push_back(tensor);
      names.push_back(name);
    }
  }
  auto run = [&](bool fused) {
    ScopedFused mode(fused);
    at::Tensor out = DecoderLayer(c, lw, hidden, positions, 0, attn);
    std::vector<at::Tensor> grads = torch::autograd::grad({out}, inputs, {dy});
    grads.insert(grads.begin(), out);
    return grads;
  };
  const std::vector<at::Tensor> got = run(true), want = run(false);
  const std::string what = c10::str(qwen3 ? "qwen3" : "qwen2", " ", Name(dt));
  if (dt == at::kFloat) {
    // fp32 keeps the ATen path: the same computation (up to the attention backward's atomics).
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(RelErr(got[i], want[i]), 1e-5) << what << " " << i;
    return;
  }
  EXPECT_LT(RelErr(got[0], want[0]), 1e-2) << what << " output";
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_TRUE(got[i + 1].defined() && want[i + 1].defined()) << what << " " << names[i];
    EXPECT_LT(RelErr(got[i + 1], want[i + 1]), 2e-2) << what << " grad of " << names[i];
  }
}

TEST(FusedLayerOpsGpu, DecoderLayerFusedMatchesUnfusedQwen2) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(6);
  CheckLayer(/*qwen3=*/false, at::kBFloat16);
  CheckLayer(/*qwen3=*/false, at::kFloat);
}

TEST(FusedLayerOpsGpu, DecoderLayerFusedMatchesUnfusedQwen3) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(7);
  CheckLayer(/*qwen3=*/true, at::kBFloat16);
}

#else

TEST(FusedLayerOpsGpu, NeedsACudaBuild) {
  GTEST_SKIP() << "built without TIDAL_CUDA: the fused layer ops are not compiled";
}

#endif

}  // namespace
}  // namespace tidal
