// `tidal bench layer-ops`: the fused CUDA layer ops (core/cuda/fused_layer_ops.h) against the
// ATen composites they replace, forward + backward, at a model shape's sizes on one GPU, and a
// whole DecoderLayer both ways. Both sides run in the same process on the same inputs
// (SetFusedLayerOpsEnabled switches core/model.cpp's path); prints JSON.
//
// Per op: median milliseconds of forward + backward over --iters runs after --warmup, each
// bracketed by device synchronisations; `fused_gbps` counts the bytes the fused kernels must
// move (each input read once, each output written once) over the fused time.
#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/cuda/fused_layer_ops.h"
#include "core/model.h"
#include "tools/cli/bench_shapes.h"
#include "tools/cli/command.h"

#ifdef TIDAL_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/autograd/autograd.h>
#endif

namespace {

using Json = nlohmann::json;
using namespace tidal;

struct Args {
  std::string shape = "1.5b";
  int64_t tokens = 16384;
  int64_t seq_len = 2048;
  int iters = 20;
  int warmup = 3;
  int device = 0;
  std::string out;
};

#ifdef TIDAL_WITH_CUDA

// Median ms of fn() (a forward + backward) with the fused path on or off.
double TimeMs(bool fused, int warmup, int iters, const std::function<void()>& fn) {
  const bool prev = FusedLayerOpsEnabled();
  SetFusedLayerOpsEnabled(fused);
  std::vector<double> ms;
  for (int i = 0; i < warmup + iters; ++i) {
    c10::cuda::device_synchronize();
    const double t0 = MonoMillis();
    fn();
    c10::cuda::device_synchronize();
    if (i >= warmup) ms.push_back(MonoMillis() - t0);
  }
  SetFusedLayerOpsEnabled(prev);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

Json Compare(const Args& a, double bytes, const std::function<void()>& fn) {
  const double aten = TimeMs(false, a.warmup, a.iters, fn);
  const double fused = TimeMs(true, a.warmup, a.iters, fn);
  Json j{{"aten_ms", aten}, {"fused_ms", fused}, {"speedup", aten / fused}};
  if (bytes > 0) j["fused_gbps"] = bytes / (fused * 1e6);
  return j;
}

void Backward(const std::vector<at::Tensor>& outs, const std::vector<at::Tensor>& inputs,
              const std::vector<at::Tensor>& grads) {
  torch::autograd::grad(outs, inputs, grads);
}

absl::StatusOr<Json> RunOnDevice(const Args& a) {
  TIDAL_ASSIGN_OR_RETURN(ModelConfig c, cli::BenchModelShape(a.shape));
  const at::Device dev(at::kCUDA, a.device);
  c10::cuda::set_device(a.device);
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(dev);
  const int64_t t = a.tokens, h = c.hidden_size, d = c.HeadDim(), inter = c.intermediate_size;
  const int64_t hq = c.num_attention_heads, hkv = c.num_key_value_heads;
  const double e = 2.0;  // bytes per bf16 element
  at::manual_seed(1);
  at::Tensor cu = at::arange(0, t + 1, a.seq_len, at::kLong);
  if (cu[-1].item<int64_t>() != t) cu = at::cat({cu, at::full({1}, t, at::kLong)});
  at::Tensor positions = PackedPositions(cu, t).to(dev);
  Json ops;

  at::Tensor x = at::randn({t, h}, bf).requires_grad_(true);
  at::Tensor nw = (1 + 0.1 * at::randn({h}, bf)).requires_grad_(true);
  at::Tensor dy = at::randn({t, h}, bf);
  ops["rms_norm"] = Compare(a, e * t * h * 5, [&] {
    Backward({RmsNorm(x, nw, c.rms_norm_eps)}, {x, nw}, {dy});
  });

  // RoPE of the packed q/k/v projection: ATen splits it and rotates q and k separately.
  const int64_t qkv_cols = (hq + 2 * hkv) * d;
  at::Tensor qkv = at::randn({t, qkv_cols}, bf).requires_grad_(true);
  at::Tensor inv_freq = RopeInvFreq(c, dev);
  at::Tensor gq = at::randn({t, hq, d}, bf), gk = at::randn({t, hkv, d}, bf), gv = at::randn({t, hkv, d}, bf);
  ops["rope_qkv"] = Compare(a, e * t * qkv_cols * 4, [&] {
    std::vector<at::Tensor> outs;
    if (FusedLayerOpsEnabled()) {
      auto r = cuda::FusedQkvRope(qkv, positions, inv_freq, hq, hkv, d);
      outs = {r[0], r[1], r[2]};
    } else {
      outs = {ApplyRope(qkv.narrow(1, 0, hq * d).view({t, hq, d}), positions, inv_freq),
              ApplyRope(qkv.narrow(1, hq * d, hkv * d).view({t, hkv, d}), positions, inv_freq),
              qkv.narrow(1, (hq + hkv) * d, hkv * d).view({t, hkv, d})};
    }
    Backward(outs, {qkv}, {gq, gk, gv});
  });

  at::Tensor gate_up = at::randn({t, 2 * inter}, bf).requires_grad_(true);
  at::Tensor dmlp = at::randn({t, inter}, bf);
  ops["swiglu"] = Compare(a, e * t * inter * 7, [&] {
    at::Tensor out = FusedLayerOpsEnabled()
                         ? cuda::FusedSwiGlu(gate_up)
                         : at::silu(gate_up.narrow(1, 0, inter)) * gate_up.narrow(1, inter, inter);
    Backward({out}, {gate_up}, {dmlp});
  });

  // One whole layer (layer 0 of the shape, random weights), attention over seq_len sequences.
  NamedTensors w;
  std::vector<at::Tensor> leaves = {x};
  for (const ParamSpec& s : ParamSpecs(c)) {
    if (s.name.rfind(LayerPrefix(0), 0) != 0) continue;
    at::Tensor p = s.name.find("norm") != std::string::npos ? at::ones(s.shape, bf) : 0.02 * at::randn(s.shape, bf);
    w.emplace(s.name, p.requires_grad_(true));
    leaves.push_back(w.at(s.name));
  }
  const LayerWeights lw = LayerView(w, 0);
  AttentionFn attn = [&cu](int64_t, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    return VarlenCausalAttention(q, k, v, cu);
  };
  ops["decoder_layer"] = Compare(a, 0, [&] {
    Backward({DecoderLayer(c, lw, x, positions, 0, attn)}, leaves, {dy});
  });

  return Json{{"shape", a.shape},
              {"tokens", t},
              {"seq_len", a.seq_len},
              {"dtype", "bfloat16"},
              {"iters", a.iters},
              {"metric", "median ms of forward + backward; speedup = aten_ms / fused_ms"},
              {"ops", ops}};
}

#endif  // TIDAL_WITH_CUDA

absl::Status Run(const Args& a) {
#ifndef TIDAL_WITH_CUDA
  return absl::UnimplementedError("bench layer-ops needs a CUDA build");
#else
  if (a.tokens < 1 || a.seq_len < 1 || a.iters < 1 || a.warmup < 0) {
    return absl::InvalidArgumentError("--tokens, --seq-len, --iters must be >= 1 and --warmup >= 0");
  }
  TIDAL_RETURN_IF_ERROR(cli::BenchModelShape(a.shape).status());
  if (a.device < 0 || a.device >= static_cast<int>(c10::cuda::device_count())) {
    return absl::FailedPreconditionError(absl::StrCat("bench layer-ops: no CUDA device ", a.device));
  }
  try {
    TIDAL_ASSIGN_OR_RETURN(Json j, RunOnDevice(a));
    std::cout << j.dump(2) << std::endl;
    if (!a.out.empty()) std::ofstream(a.out) << j.dump(2) << "\n";
  } catch (const std::exception& ex) {
    return absl::InternalError(absl::StrCat("bench layer-ops: ", ex.what()));
  }
  return absl::OkStatus();
#endif
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto a = std::make_shared<Args>();
  sub.add_option("--shape", a->shape, "Model shape: 1.5b | 7b | tiny (random weights)");
  sub.add_option("--tokens", a->tokens, "Packed tokens per call");
  sub.add_option("--seq-len", a->seq_len, "Tokens per sequence (the layer's attention)");
  sub.add_option("--iters", a->iters, "Timed runs per op and path");
  sub.add_option("--warmup", a->warmup, "Untimed runs first");
  sub.add_option("--device", a->device, "CUDA device index");
  sub.add_option("--out", a->out, "Also write the JSON here");
  return [a] { return Run(*a); };
}

TIDAL_CLI_COMMAND("bench layer-ops", "Fused CUDA layer ops vs their ATen composites, fwd+bwd (JSON)", Setup);

}  // namespace
