// The token-head CUDA kernels (trainer/cuda/token_head.cu) against the CPU path of the same
// functions (ATen, fp32) on identical logits: bf16 / fp16 / fp32, vectorised and scalar rows (a
// vocabulary that is not a multiple of 8), temperature, entropy. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>

#include "core/cuda_devices.h"
#include "trainer/token_head.h"

namespace tidal::trainer {
namespace {

class TokenHeadGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() < 1) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(TokenHeadGpu, KernelsMatchTheCpuMathForEveryDtypeAndRowShape) {
  at::manual_seed(7);
  const at::Device dev(at::kCUDA, 0);
  for (at::ScalarType dt : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (int64_t v : {int64_t{151936}, int64_t{1001}, int64_t{8}}) {
      for (double temperature : {1.0, 0.6}) {
        const int64_t n = 33;
        at::Tensor logits = (at::randn({n, v}) * 3).to(dt);  // the values both paths see
        logits[0][v - 1] = 25;                                // one peaked row
        at::Tensor targets = at::randint(0, v, {n}, at::kLong);
        targets[0] = v - 1;
        at::Tensor g_lp = at::randn({n}), g_ent = at::randn({n});
        // CPU reference on the same (rounded) values in fp32.
        at::Tensor cpu = logits.to(at::kFloat);
        HeadStats ref = TokenHeadForward(cpu, targets, temperature, true);
        at::Tensor ref_grad = cpu.clone();
        TokenHeadBackwardInPlace(ref_grad, targets, ref, g_lp, g_ent, temperature);

        at::Tensor gl = logits.to(dev);
        HeadStats st = TokenHeadForward(gl, targets.to(dev), temperature, true);
        const std::string where = std::string(c10::toString(dt)) + " V=" + std::to_string(v) +
                                  " T=" + std::to_string(temperature);
        EXPECT_TRUE(at::allclose(st.logprobs.cpu(), ref.logprobs, 1e-4, 1e-4)) << where;
        EXPECT_TRUE(at::allclose(st.entropy.cpu(), ref.entropy, 1e-4, 1e-4)) << where;
        EXPECT_TRUE(at::allclose(st.lse.cpu(), ref.lse, 1e-4, 1e-4)) << where;
        TokenHeadBackwardInPlace(gl, targets.to(dev), st, g_lp.to(dev), g_ent.to(dev), temperature);
        // The gradient is rounded once to the logits' dtype: compare within that rounding. The
        // absolute term covers fp32 exp / logsumexp differences at |z| ~ 40 (the peaked row at
        // T = 0.6): p there carries ~ulp(40) = 4e-6 of absolute error on either side.
        const double tol = dt == at::kFloat ? 1e-6 : dt == at::kHalf ? 2e-3 : 1.6e-2;
        at::Tensor diff = (gl.cpu().to(at::kFloat) - ref_grad).abs();
        at::Tensor bound = ref_grad.abs() * tol + 3e-5;
        EXPECT_TRUE((diff <= bound).all().item<bool>()) << where << " worst " << (diff - bound).max().item<float>();
      }
    }
  }
}

TEST_F(TokenHeadGpu, ChunkedHeadOnTheDeviceMatchesTheCpu) {
  at::manual_seed(8);
  const at::Device dev(at::kCUDA, 0);
  const int64_t k = 300, h = 64, v = 5000;
  at::Tensor rows = at::randn({k, h}).to(at::kBFloat16), weight = (at::randn({v, h}) * 0.2).to(at::kBFloat16);
  at::Tensor targets = at::randint(0, v, {k}, at::kLong);
  at::Tensor g_lp = at::randn({k});
  ChunkedHead cpu(rows.to(at::kFloat), weight.to(at::kFloat), targets, 1.0, 128, 0);
  auto [lp_ref, ent_ref] = cpu.Forward(false);
  at::Tensor gw_ref;
  at::Tensor gr_ref = cpu.Backward(g_lp, at::Tensor(), &gw_ref);
  for (int64_t keep : {int64_t{0}, int64_t{1} << 30}) {
    ChunkedHead gpu(rows.to(dev), weight.to(dev), targets.to(dev), 1.0, 128, keep);
    auto [lp, ent] = gpu.Forward(false);
    EXPECT_TRUE(at::allclose(lp.cpu(), lp_ref, 2e-2, 2e-2)) << keep;  // bf16 GEMM vs fp32 GEMM
    at::Tensor gw;
    at::Tensor gr = gpu.Backward(g_lp.to(dev), at::Tensor(), &gw);
    EXPECT_TRUE(at::allclose(gr.cpu().to(at::kFloat), gr_ref, 5e-2, 5e-2)) << keep;
    EXPECT_TRUE(at::allclose(gw.cpu().to(at::kFloat), gw_ref, 5e-2, 5e-2)) << keep;
  }
}

TEST_F(TokenHeadGpu, AnOutOfRangeTargetYieldsNanNotAStrayRead) {
  const at::Device dev(at::kCUDA, 0);
  at::Tensor logits = at::randn({2, 64}, at::TensorOptions().device(dev).dtype(at::kBFloat16));
  at::Tensor targets = at::tensor({3, 64}, at::kLong).to(dev);
  HeadStats st = TokenHeadForward(logits, targets, 1.0, false);
  at::Tensor lp = st.logprobs.cpu();
  EXPECT_TRUE(std::isfinite(lp[0].item<float>()));
  EXPECT_TRUE(std::isnan(lp[1].item<float>()));
}

}  // namespace
}  // namespace tidal::trainer
