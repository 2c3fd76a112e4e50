// Architecture description of a decoder-only transformer (Qwen2 / Qwen3 / Llama-3 family).
//
// One config type serves HF checkpoints and tidal's tiny built-in sizes. Field names follow HF
// config.json so FromHfJson/ToHfJson round-trip. Torch-free: include it anywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tidal {

struct ModelConfig {
  std::string model_type = "qwen2";  // HF model_type: "qwen2" | "qwen3" | "llama"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // 0 means hidden_size / num_attention_heads
  int64_t max_position_embeddings = 4096;
  double rope_theta = 10000.0;
  // RoPE frequency scaling (HF rope_parameters / rope_scaling): "default" or "llama3" (Llama-3.1+,
  // which rescales low frequencies by rope_factor and interpolates the band in between).
  std::string rope_type = "default";
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position_embeddings = 8192;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projection bias (Qwen2 true, Llama/Qwen3 false)
  bool qk_norm = false;         // per-head RMSNorm on q and k before RoPE (Qwen3)
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";  // "float32" | "bfloat16" | "float16"

  int64_t HeadDim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  // Checks divisibility (heads % kv_heads), positivity, known model_type.
  absl::Status Validate() const;

  // Parses HF config.json text; `source` names the file in error messages.
  static absl::StatusOr<ModelConfig> FromHfJson(const std::string& json_text, const std::string& source);
  static absl::StatusOr<ModelConfig> FromHfDir(const std::string& dir);
  // config.json text that transformers' AutoConfig loads unchanged.
  std::string ToHfJson() const;
};

// A parameter of the model: HF name and shape, in canonical order (embed, layers 0..L-1, norm,
// lm_head). The trainer shards by this list and checkpoint loaders validate against it.
struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ParamSpec> ParamSpecs(const ModelConfig& config);

// Tiny Qwen2-architecture config with the byte tokenizer's vocabulary, for the CPU quickstart
// and tests.
ModelConfig TinyQwen2Config(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads,
                            int64_t vocab_size);

}  // namespace tidal
