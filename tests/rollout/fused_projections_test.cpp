// rollout/fused_projections.h: packing keeps every named weight's values, lays q/k/v (and their
// biases) and gate/up back to back so that one GEMM over the fused view equals the separate
// ones, keeps named in-place updates visible through the fused view, and leaves unpacked or
// incomplete layouts unfused.
#include "rollout/fused_projections.h"

#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

namespace tidal::rollout {
namespace {

NamedTensors Layers(int64_t layers, bool biases) {
  NamedTensors w;
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = LayerPrefix(l);
    w[p + "input_layernorm.weight"] = at::randn({16});
    w[p + "post_attention_layernorm.weight"] = at::randn({16});
    w[p + "self_attn.q_proj.weight"] = at::randn({16, 16});
    w[p + "self_attn.k_proj.weight"] = at::randn({4, 16});
    w[p + "self_attn.v_proj.weight"] = at::randn({4, 16});
    w[p + "self_attn.o_proj.weight"] = at::randn({16, 16});
    if (biases) {
      w[p + "self_attn.q_proj.bias"] = at::randn({16});
      w[p + "self_attn.k_proj.bias"] = at::randn({4});
      w[p + "self_attn.v_proj.bias"] = at::randn({4});
    }
    w[p + "mlp.gate_proj.weight"] = at::randn({24, 16});
    w[p + "mlp.up_proj.weight"] = at::randn({24, 16});
    w[p + "mlp.down_proj.weight"] = at::randn({16, 24});
  }
  return w;
}

NamedTensors Clone(const NamedTensors& w) {
  NamedTensors c;
  for (const auto& [n, t] : w) c[n] = t.clone();
  return c;
}

TEST(FusedProjections, PackedLayersRunOneGemmEqualToTheSeparateOnes) {
  c10::InferenceMode guard;
  at::manual_seed(1);
  for (bool biases : {true, false}) {
    NamedTensors w = Layers(2, biases);
    const NamedTensors before = Clone(w);
    PackProjections(w, 2, /*copy_values=*/true);
    for (const auto& [n, t] : before) EXPECT_TRUE(at::equal(w.at(n), t)) << n;
    for (int64_t l = 0; l < 2; ++l) {
      const LayerWeights lw = LayerView(w, l);
      const FusedProjections f = FusedView(lw);
      ASSERT_TRUE(f.qkv_weight.defined()) << l;
      ASSERT_TRUE(f.gate_up_weight.defined()) << l;
      EXPECT_EQ(f.qkv_bias.defined(), biases);
      EXPECT_EQ(f.qkv_weight.sizes(), (at::IntArrayRef{24, 16}));
      EXPECT_TRUE(at::equal(f.qkv_weight, at::cat({lw.q_proj, lw.k_proj, lw.v_proj})));
      EXPECT_TRUE(at::equal(f.gate_up_weight, at::cat({lw.gate_proj, lw.up_proj})));
      at::Tensor x = at::randn({5, 16});
      at::Tensor qkv = at::linear(x, f.qkv_weight, biases ? std::optional<at::Tensor>(f.qkv_bias) : std::nullopt);
      at::Tensor k = at::linear(x, lw.k_proj, biases ? std::optional<at::Tensor>(lw.k_bias) : std::nullopt);
      EXPECT_TRUE(at::allclose(qkv.narrow(1, 16, 4), k, 1e-5, 1e-5));
    }
  }
}

TEST(FusedProjections, NamedUpdatesLandInTheFusedStorage) {
  c10::InferenceMode guard;
  NamedTensors w = Layers(1, true);
  PackProjections(w, 1, /*copy_values=*/false);
  const std::string p = LayerPrefix(0);
  w.at(p + "self_attn.v_proj.weight").copy_(at::full({4, 16}, 3.0));
  w.at(p + "mlp.up_proj.weight").copy_(at::full({24, 16}, -2.0));
  const FusedProjections f = FusedView(LayerView(w, 0));
  EXPECT_TRUE(at::equal(f.qkv_weight.narrow(0, 20, 4), at::full({4, 16}, 3.0)));
  EXPECT_TRUE(at::equal(f.gate_up_weight.narrow(0, 24, 24), at::full({24, 16}, -2.0)));
}

TEST(FusedProjections, UnpackedOrIncompleteLayoutsStaySeparate) {
  c10::InferenceMode guard;
  NamedTensors w = Layers(1, true);
  FusedProjections f = FusedView(LayerView(w, 0));  // separate allocations
  EXPECT_FALSE(f.qkv_weight.defined());
  EXPECT_FALSE(f.gate_up_weight.defined());
  // Packed weights whose biases are not all there: the weight GEMM is not fused either (the
  // bias would be missing from part of it).
  NamedTensors partial = Layers(1, true);
  partial.erase(LayerPrefix(0) + "self_attn.k_proj.bias");
  PackProjections(partial, 1, true);
  f = FusedView(LayerView(partial, 0));
  EXPECT_FALSE(f.qkv_weight.defined());
  EXPECT_TRUE(f.gate_up_weight.defined());
}

}  // namespace
}  // namespace tidal::rollout
