// The one model definition shared by the trainer and the rollout engine.
//
// Contract:
// - Weights live in a NamedTensors map keyed by HF names (model.layers.3.self_attn.q_proj.weight,
//   ...). The trainer's sharded parameters and the engine's weights both resolve into LayerWeights
//   views of such tensors; nothing copies them.
// - Sequences are packed: ids [T] int64 holds B sequences back to back, cu_seqlens [B+1] int64
//   their boundaries; positions restart at 0 per sequence unless given. No padding.
// - Attention is a parameter (AttentionFn): the trainer and reference path use
//   VarlenCausalAttention over cu_seqlens; the engine passes a paged-KV implementation that writes
//   k/v into its cache and attends over it. Everything else (norms, RoPE, projections, MLP) is
//   here, once.
// - Pure functions of (weights, inputs): safe to call from several threads with distinct inputs.
//   Autograd flows through when the weights require grad.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <string>

#include "core/model_config.h"
#include "core/status.h"

namespace tidal {

using NamedTensors = std::map<std::string, at::Tensor>;

// One decoder layer's weights (views into a NamedTensors; undefined tensors = absent bias/norm).
struct LayerWeights {
  at::Tensor input_norm, post_attn_norm;
  at::Tensor q_proj, k_proj, v_proj, o_proj;  // [out, in] as in HF
  at::Tensor q_bias, k_bias, v_bias;          // Qwen2 only
  at::Tensor q_norm, k_norm;                  // Qwen3 only, [head_dim]
  at::Tensor gate_proj, up_proj, down_proj;
};
LayerWeights LayerView(const NamedTensors& w, int64_t layer);
std::string LayerPrefix(int64_t layer);  // "model.layers.<i>."

// q [T, Hq, D], k/v [T, Hkv, D], RoPE applied; returns [T, Hq, D].
using AttentionFn = std::function<at::Tensor(int64_t layer, const at::Tensor& q,
                                             const at::Tensor& k, const at::Tensor& v)>;

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);
// Rotates x [T, H, D] by positions [T] (HF "rotate_half" convention), computing in fp32.
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& positions, double theta);
// Same with precomputed inverse frequencies [D/2] fp32 (see RopeInvFreq).
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq);
// RoPE inverse frequencies [head_dim/2] fp32 for the config: plain (rope_theta) or Llama-3.1's
// "llama3" scaling, computed as HF does. DecoderLayer uses this; engines applying RoPE
// themselves should too.
at::Tensor RopeInvFreq(const ModelConfig& c, at::Device device = at::kCPU);
// Causal attention inside each packed sequence, GQA-aware; reference and training path.
at::Tensor VarlenCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& cu_seqlens);
// A packed batch's sequence boundaries, validated and read on the host once, for every layer's
// attention call: the overload below then needs no device->host copy (a sync) per layer.
struct PackedBounds {
  at::Tensor cu_host;    // [B+1] int64 on the CPU
  at::Tensor cu_device;  // [B+1] int32 on `device` (flash attention's layout); undefined on CPU
  int64_t max_len = 0;
};
PackedBounds MakePackedBounds(const at::Tensor& cu_seqlens, int64_t total_tokens, at::Device device);
at::Tensor VarlenCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const PackedBounds& bounds);
// Positions [T] restarting at 0 at each cu_seqlens boundary.
at::Tensor PackedPositions(const at::Tensor& cu_seqlens, int64_t total_tokens);

at::Tensor Embed(const NamedTensors& w, const at::Tensor& ids);  // [T, hidden]
// hidden [T, hidden] -> [T, hidden] through one decoder layer.
at::Tensor DecoderLayer(const ModelConfig& c, const LayerWeights& w, const at::Tensor& hidden,
                        const at::Tensor& positions, int64_t layer, const AttentionFn& attn);
at::Tensor FinalNorm(const ModelConfig& c, const NamedTensors& w, const at::Tensor& hidden);
// lm_head weight (the embedding when tied).
at::Tensor LmHead(const ModelConfig& c, const NamedTensors& w);
// Log-probabilities of targets [T] under logits(hidden)/temperature, computed in chunks of
// `chunk_tokens` rows so the [T, V] fp32 matrix never exists at once. Returns [T] fp32.
at::Tensor TokenLogprobsFromHidden(const at::Tensor& hidden, const at::Tensor& lm_head,
                                   const at::Tensor& targets, double temperature = 1.0,
                                   int64_t chunk_tokens = 1024);

// Owns a config and its weights; the convenience path for loading, reference forwards and export.
class Model {
 public:
  Model(ModelConfig config, NamedTensors weights);
  // Reads config.json + (sharded) safetensors from an HF directory, casting to dtype.
  static absl::StatusOr<Model> LoadHf(const std::string& dir, at::ScalarType dtype = at::kFloat);
  // Deterministic random init (HF-style: normal(0, 0.02) for matrices, ones for norms).
  static Model RandomInit(const ModelConfig& config, uint64_t seed, at::ScalarType dtype = at::kFloat);
  // Writes config.json + model.safetensors that transformers loads unchanged.
  absl::Status SaveHf(const std::string& dir) const;

  const ModelConfig& config() const { return config_; }
  NamedTensors& weights() { return weights_; }
  const NamedTensors& weights() const { return weights_; }

  // Final-norm hidden states [T, hidden] for packed ids; attn defaults to VarlenCausalAttention.
  at::Tensor Hidden(const at::Tensor& ids, const at::Tensor& cu_seqlens,
                    const AttentionFn& attn = nullptr) const;
  at::Tensor Logits(const at::Tensor& ids, const at::Tensor& cu_seqlens) const;  // [T, V] fp32
  // logprob of targets[t] given ids[..t] (targets usually ids shifted left by one).
  at::Tensor TokenLogprobs(const at::Tensor& ids, const at::Tensor& cu_seqlens,
                           const at::Tensor& targets, double temperature = 1.0) const;

 private:
  ModelConfig config_;
  NamedTensors weights_;
};

}  // namespace tidal
