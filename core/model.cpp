#include "core/model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "absl/strings/match.h"
#include "core/cuda/fused_layer_ops.h"

namespace tidal {
namespace {

const at::Tensor& Required(const NamedTensors& w, const std::string& name) {
  auto it = w.find(name);
  TORCH_CHECK(it != w.end() && it->second.defined(), "model weights lack tensor ", name);
  return it->second;
}

at::Tensor Optional(const NamedTensors& w, const std::string& name) {
  auto it = w.find(name);
  return it == w.end() ? at::Tensor() : it->second;
}

at::Tensor Linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::linear(x, weight, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
}

}  // namespace

std::string LayerPrefix(int64_t layer) { return absl::StrCat("model.layers.", layer, "."); }

LayerWeights LayerView(const NamedTensors& w, int64_t layer) {
  const std::string p = LayerPrefix(layer);
  LayerWeights l;
  l.input_norm = Required(w, p + "input_layernorm.weight");
  l.post_attn_norm = Required(w, p + "post_attention_layernorm.weight");
  l.q_proj = Required(w, p + "self_attn.q_proj.weight");
  l.k_proj = Required(w, p + "self_attn.k_proj.weight");
  l.v_proj = Required(w, p + "self_attn.v_proj.weight");
  l.o_proj = Required(w, p + "self_attn.o_proj.weight");
  l.q_bias = Optional(w, p + "self_attn.q_proj.bias");
  l.k_bias = Optional(w, p + "self_attn.k_proj.bias");
  l.v_bias = Optional(w, p + "self_attn.v_proj.bias");
  l.q_norm = Optional(w, p + "self_attn.q_norm.weight");
  l.k_norm = Optional(w, p + "self_attn.k_norm.weight");
  l.gate_proj = Required(w, p + "mlp.gate_proj.weight");
  l.up_proj = Required(w, p + "mlp.up_proj.weight");
  l.down_proj = Required(w, p + "mlp.down_proj.weight");
  return l;
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
#ifdef TIDAL_WITH_CUDA
  // CUDA bf16/fp16: one fused kernel each way, same roundings (core/cuda/fused_layer_ops.h).
  if (cuda::UseFusedLayerOps(x) && cuda::FusedRmsNormSupports(x, weight)) {
    return cuda::FusedRmsNorm(x, weight, eps);
  }
#endif
  // As HF: normalise in fp32, cast back to the input dtype, then scale (in the weight's dtype).
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(var + eps)).to(x.scalar_type());
}

namespace {
// inv_freq exactly as HF computes it (fp32 pow of an fp32 exponent) so positions agree bit-wise.
at::Tensor DefaultInvFreq(double theta, int64_t d, at::Device device) {
  at::Tensor exponent =
      at::arange(0, d, 2, at::TensorOptions().dtype(at::kLong).device(device)).to(at::kFloat) /
      static_cast<float>(d);
  return 1.0 / at::pow(static_cast<float>(theta), exponent);
}
}  // namespace

at::Tensor RopeInvFreq(const ModelConfig& c, at::Device device) {
  at::Tensor inv_freq = DefaultInvFreq(c.rope_theta, c.HeadDim(), device);
  if (c.rope_type != "llama3") return inv_freq;
  // transformers' _compute_llama3_parameters: long wavelengths slowed by `factor`, short ones
  // kept, the band in between interpolated.
  const double old_ctx = static_cast<double>(c.rope_original_max_position_embeddings);
  const double low_wavelen = old_ctx / c.rope_low_freq_factor;
  const double high_wavelen = old_ctx / c.rope_high_freq_factor;
  at::Tensor wavelen = (2 * M_PI) / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_wavelen, inv_freq / c.rope_factor, inv_freq);
  at::Tensor smooth = (old_ctx / wavelen - c.rope_low_freq_factor) /
                      (c.rope_high_freq_factor - c.rope_low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / c.rope_factor + smooth * scaled;
  at::Tensor medium = (wavelen < high_wavelen).logical_not() & (wavelen > low_wavelen).logical_not();
  return at::where(medium, smoothed, scaled);
}

at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& positions, double theta) {
  TORCH_CHECK(x.dim() == 3, "ApplyRope expects x [T, H, D], got ", x.sizes());
  return ApplyRope(x, positions, DefaultInvFreq(theta, x.size(2), x.device()));
}

at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq) {
  TORCH_CHECK(x.dim() == 3, "ApplyRope expects x [T, H, D], got ", x.sizes());
  TORCH_CHECK(positions.dim() == 1 && positions.size(0) == x.size(0),
              "ApplyRope: positions must be [T] with T=", x.size(0), ", got ", positions.sizes());
  const int64_t d = x.size(2);
  TORCH_CHECK(d % 2 == 0 && inv_freq.numel() == d / 2, "ApplyRope: head_dim ", d,
              " must be even and match inv_freq of ", inv_freq.numel());
#ifdef TIDAL_WITH_CUDA
  if (cuda::UseFusedLayerOps(x) && positions.device() == x.device()) {
    return cuda::FusedRope(x, at::empty({x.size(0), 0, d}, x.options()), positions, inv_freq)[0];
  }
#endif
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq.to(x.device(), at::kFloat).unsqueeze(0);
  at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);  // [T, 1, D]
  at::Tensor cos = emb.cos(), sin = emb.sin();
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor x1 = xf.narrow(-1, 0, d / 2), x2 = xf.narrow(-1, d / 2, d / 2);
  at::Tensor rotated = at::cat({-x2, x1}, -1);  // rotate_half
  return (xf * cos + rotated * sin).to(x.scalar_type());
}

at::Tensor PackedPositions(const at::Tensor& cu_seqlens, int64_t total_tokens) {
  TORCH_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.size(0) >= 1, "cu_seqlens must be [B+1], got ",
              cu_seqlens.sizes());
  at::Tensor cu = cu_seqlens.to(at::kLong);
  at::Tensor starts = cu.narrow(0, 0, cu.size(0) - 1);
  at::Tensor lengths = cu.narrow(0, 1, cu.size(0) - 1) - starts;
  // output_size avoids a device->host sync on GPU.
  at::Tensor start_of_token = at::repeat_interleave(starts, lengths, /*dim=*/0, total_tokens);
  return at::arange(total_tokens, cu.options()) - start_of_token;
}

PackedBounds MakePackedBounds(const at::Tensor& cu_seqlens, int64_t total_tokens, at::Device device) {
  // Boundaries are read on the host: free for a CPU cu_seqlens, one sync otherwise.
  PackedBounds out;
  out.cu_host = cu_seqlens.to(at::kCPU, at::kLong).contiguous();
  const int64_t* b = out.cu_host.data_ptr<int64_t>();
  const int64_t n = out.cu_host.numel() - 1;
  TORCH_CHECK(n >= 0 && b[0] == 0 && b[n] == total_tokens, "cu_seqlens must start at 0 and end at T=", total_tokens,
              ", got ", cu_seqlens);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(b[i + 1] >= b[i], "cu_seqlens must be non-decreasing, got ", cu_seqlens);
    out.max_len = std::max(out.max_len, b[i + 1] - b[i]);
  }
  if (device.is_cuda()) out.cu_device = out.cu_host.to(device, at::kInt);
  return out;
}

at::Tensor VarlenCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& cu_seqlens) {
  return VarlenCausalAttention(q, k, v, MakePackedBounds(cu_seqlens, q.size(0), q.device()));
}

at::Tensor VarlenCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const PackedBounds& bounds) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "attention expects [T, H, D] inputs");
  TORCH_CHECK(k.sizes() == v.sizes(), "k and v shapes differ: ", k.sizes(), " vs ", v.sizes());
  TORCH_CHECK(q.size(0) == k.size(0) && q.size(2) == k.size(2), "q ", q.sizes(), " and k ",
              k.sizes(), " disagree on tokens or head_dim");
  const int64_t hq = q.size(1), hkv = k.size(1), t = q.size(0);
  TORCH_CHECK(hq % hkv == 0, "query heads ", hq, " not a multiple of kv heads ", hkv);
  const int64_t* b = bounds.cu_host.data_ptr<int64_t>();
  const int64_t n = bounds.cu_host.numel() - 1;
  TORCH_CHECK(b[n] == t, "packed bounds end at ", b[n], ", attention has T=", t);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(2)));
  // CUDA half/bf16: one varlen flash-attention call over the whole pack (GQA-native, with
  // autograd) instead of a launch per sequence.
  const bool flash = q.is_cuda() && (q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf) &&
                     k.scalar_type() == q.scalar_type() && q.size(2) % 8 == 0 && q.size(2) <= 256 && t > 0;
  if (flash) {
    const at::Tensor cu32 = bounds.cu_device.defined() && bounds.cu_device.device() == q.device()
                                ? bounds.cu_device
                                : bounds.cu_host.to(q.device(), at::kInt);
    return std::get<0>(at::_flash_attention_forward(q.contiguous(), k.contiguous(), v.contiguous(), cu32,
                                                    cu32, bounds.max_len, bounds.max_len, /*dropout_p=*/0.0,
                                                    /*is_causal=*/true, /*return_debug_mask=*/false,
                                                    scale));
  }
  std::vector<at::Tensor> outs;
  outs.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = b[i + 1] - b[i];
    if (len == 0) continue;
    // [L, H, D] -> [H, L, D]; kv heads are expanded to query heads (HF repeat_kv order).
    at::Tensor qs = q.narrow(0, b[i], len).transpose(0, 1);
    at::Tensor ks = k.narrow(0, b[i], len).transpose(0, 1);
    at::Tensor vs = v.narrow(0, b[i], len).transpose(0, 1);
    if (hq != hkv) {
      ks = ks.repeat_interleave(hq / hkv, 0);
      vs = vs.repeat_interleave(hq / hkv, 0);
    }
    at::Tensor o = at::scaled_dot_product_attention(qs, ks, vs, /*attn_mask=*/std::nullopt,
                                                    /*dropout_p=*/0.0, /*is_causal=*/true, scale);
    outs.push_back(o.transpose(0, 1));
  }
  if (outs.empty()) return at::empty_like(q);
  return outs.size() == 1 ? outs[0].contiguous() : at::cat(outs, 0);
}

at::Tensor Embed(const NamedTensors& w, const at::Tensor& ids) {
  return at::embedding(Required(w, "model.embed_tokens.weight"), ids);
}

#ifdef TIDAL_WITH_CUDA
namespace {

// q, k and v biases as one [(Hq + 2 Hkv) D] vector (zeros for an absent one), or none at all.
std::optional<at::Tensor> PackedQkvBias(const LayerWeights& w) {
  if (!w.q_bias.defined() && !w.k_bias.defined() && !w.v_bias.defined()) return std::nullopt;
  auto or_zeros = [&](const at::Tensor& b, const at::Tensor& proj) {
    return b.defined() ? b : at::zeros({proj.size(0)}, proj.options());
  };
  return at::cat({or_zeros(w.q_bias, w.q_proj), or_zeros(w.k_bias, w.k_proj), or_zeros(w.v_bias, w.v_proj)});
}

// DecoderLayer on CUDA bf16/fp16: the same layer with fused norms, RoPE and SwiGLU, and one GEMM
// for q/k/v and one for gate/up (the weight cats are small next to the activations; autograd
// splits the weight grads back).
at::Tensor FusedDecoderLayer(const ModelConfig& c, const LayerWeights& w, const at::Tensor& hidden,
                             const at::Tensor& positions, int64_t layer, const AttentionFn& attn) {
  const int64_t t = hidden.size(0), d = c.HeadDim();
  const int64_t hq = c.num_attention_heads, hkv = c.num_key_value_heads;
  const double eps = c.rms_norm_eps;
  at::Tensor x = RmsNorm(hidden, w.input_norm, eps);
  at::Tensor qkv = at::linear(x, at::cat({w.q_proj, w.k_proj, w.v_proj}), PackedQkvBias(w));
  at::Tensor inv_freq = RopeInvFreq(c, hidden.device());
  at::Tensor q, k, v;
  if (w.q_norm.defined() || w.k_norm.defined()) {  // Qwen3: per-head norms between projection and RoPE
    q = qkv.narrow(1, 0, hq * d).view({t, hq, d});
    k = qkv.narrow(1, hq * d, hkv * d).view({t, hkv, d});
    v = qkv.narrow(1, (hq + hkv) * d, hkv * d).view({t, hkv, d});
    if (w.q_norm.defined()) q = RmsNorm(q, w.q_norm, eps);
    if (w.k_norm.defined()) k = RmsNorm(k, w.k_norm, eps);
    auto qk = cuda::FusedRope(q, k, positions, inv_freq);
    q = qk[0];
    k = qk[1];
  } else {
    auto qkv_out = cuda::FusedQkvRope(qkv, positions, inv_freq, hq, hkv, d);
    q = qkv_out[0];
    k = qkv_out[1];
    v = qkv_out[2];
  }
  at::Tensor o = attn(layer, q, k, v).reshape({t, hq * d});
  at::Tensor h = hidden + at::linear(o, w.o_proj);
  x = RmsNorm(h, w.post_attn_norm, eps);
  at::Tensor gate_up = at::linear(x, at::cat({w.gate_proj, w.up_proj}));
  return h + at::linear(cuda::FusedSwiGlu(gate_up), w.down_proj);
}

}  // namespace
#endif

at::Tensor DecoderLayer(const ModelConfig& c, const LayerWeights& w, const at::Tensor& hidden,
                        const at::Tensor& positions, int64_t layer, const AttentionFn& attn) {
  TORCH_CHECK(attn, "DecoderLayer needs an attention function");
#ifdef TIDAL_WITH_CUDA
  if (cuda::UseFusedLayerOps(hidden) && positions.device() == hidden.device() && hidden.dim() == 2) {
    return FusedDecoderLayer(c, w, hidden, positions, layer, attn);
  }
#endif
  const int64_t t = hidden.size(0), d = c.HeadDim();
  const double eps = c.rms_norm_eps;
  at::Tensor x = RmsNorm(hidden, w.input_norm, eps);
  at::Tensor q = Linear(x, w.q_proj, w.q_bias).view({t, c.num_attention_heads, d});
  at::Tensor k = Linear(x, w.k_proj, w.k_bias).view({t, c.num_key_value_heads, d});
  at::Tensor v = Linear(x, w.v_proj, w.v_bias).view({t, c.num_key_value_heads, d});
  if (w.q_norm.defined()) q = RmsNorm(q, w.q_norm, eps);  // Qwen3: per head, before RoPE
  if (w.k_norm.defined()) k = RmsNorm(k, w.k_norm, eps);
  at::Tensor inv_freq = RopeInvFreq(c, hidden.device());
  q = ApplyRope(q, positions, inv_freq);
  k = ApplyRope(k, positions, inv_freq);
  at::Tensor o = attn(layer, q, k, v).reshape({t, c.num_attention_heads * d});
  at::Tensor h = hidden + at::linear(o, w.o_proj);
  x = RmsNorm(h, w.post_attn_norm, eps);
  at::Tensor mlp = at::linear(at::silu(at::linear(x, w.gate_proj)) * at::linear(x, w.up_proj),
                              w.down_proj);
  return h + mlp;
}

at::Tensor FinalNorm(const ModelConfig& c, const NamedTensors& w, const at::Tensor& hidden) {
  return RmsNorm(hidden, Required(w, "model.norm.weight"), c.rms_norm_eps);
}

at::Tensor LmHead(const ModelConfig& c, const NamedTensors& w) {
  return Required(w, c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
}

Model::Model(ModelConfig config, NamedTensors weights)
    : config_(std::move(config)), weights_(std::move(weights)) {}

Model Model::RandomInit(const ModelConfig& config, uint64_t seed, at::ScalarType dtype) {
  auto valid = config.Validate();
  TORCH_CHECK(valid.ok(), "RandomInit: invalid config: ", valid.message());
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  NamedTensors w;
  for (const ParamSpec& spec : ParamSpecs(config)) {
    at::Tensor t;
    if (absl::EndsWith(spec.name, "norm.weight")) {
      t = at::ones(spec.shape, at::kFloat);
    } else if (absl::EndsWith(spec.name, ".bias")) {
      t = at::zeros(spec.shape, at::kFloat);
    } else {
      t = at::empty(spec.shape, at::kFloat);
      t.normal_(0.0, 0.02, gen);
    }
    w.emplace(spec.name, t.to(dtype));
  }
  return Model(config, std::move(w));
}

at::Tensor Model::Hidden(const at::Tensor& ids, const at::Tensor& cu_seqlens,
                         const AttentionFn& attn) const {
  TORCH_CHECK(ids.dim() == 1, "ids must be [T], got ", ids.sizes());
  const int64_t t = ids.size(0);
  AttentionFn fn = attn;
  // The boundaries read and checked once per forward, not once per layer.
  PackedBounds bounds;
  if (!fn) {
    bounds = MakePackedBounds(cu_seqlens, t, ids.device());
    fn = [&bounds](int64_t, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
      return VarlenCausalAttention(q, k, v, bounds);
    };
  }
  at::Tensor positions = PackedPositions(cu_seqlens.to(ids.device()), t);
  at::Tensor h = Embed(weights_, ids);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    h = DecoderLayer(config_, LayerView(weights_, l), h, positions, l, fn);
  }
  return FinalNorm(config_, weights_, h);
}

at::Tensor Model::Logits(const at::Tensor& ids, const at::Tensor& cu_seqlens) const {
  return at::linear(Hidden(ids, cu_seqlens), LmHead(config_, weights_)).to(at::kFloat);
}

at::Tensor Model::TokenLogprobs(const at::Tensor& ids, const at::Tensor& cu_seqlens,
                                const at::Tensor& targets, double temperature) const {
  return TokenLogprobsFromHidden(Hidden(ids, cu_seqlens), LmHead(config_, weights_), targets,
                                 temperature);
}

}  // namespace tidal
