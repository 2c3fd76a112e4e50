#include "core/model_config.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tidal {
namespace {

using nlohmann::json;

// Reads an integer field; `required` fields must be present and non-null.
absl::Status ReadInt(const json& j, const char* key, bool required, int64_t* out,
                     const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return absl::InvalidArgumentError(absl::StrCat(source, ": missing \"", key, "\""));
    return absl::OkStatus();
  }
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": \"", key, "\" must be an integer, found ", it->dump()));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const json& j, const char* key, double* out, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": \"", key, "\" must be a number, found ", it->dump()));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const json& j, const char* key, bool* out, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": \"", key, "\" must be true or false, found ", it->dump()));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

// RoPE settings live in "rope_parameters" (transformers >= 5) or "rope_theta"/"rope_scaling"
// (older files). Plain RoPE and Llama-3.1's "llama3" scaling are implemented; other scalings
// would silently give wrong logits, so they are refused.
absl::Status ReadRope(const json& j, ModelConfig* c, const std::string& source) {
  TIDAL_RETURN_IF_ERROR(ReadDouble(j, "rope_theta", &c->rope_theta, source));
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": \"", key, "\" must be an object, found ", it->dump()));
    }
    TIDAL_RETURN_IF_ERROR(ReadDouble(*it, "rope_theta", &c->rope_theta, source));
    std::string type = "default";
    for (const char* type_key : {"rope_type", "type"}) {
      auto t = it->find(type_key);
      if (t != it->end() && t->is_string()) type = t->get<std::string>();
    }
    if (type == "llama3") {
      c->rope_type = type;
      TIDAL_RETURN_IF_ERROR(ReadDouble(*it, "factor", &c->rope_factor, source));
      TIDAL_RETURN_IF_ERROR(ReadDouble(*it, "low_freq_factor", &c->rope_low_freq_factor, source));
      TIDAL_RETURN_IF_ERROR(ReadDouble(*it, "high_freq_factor", &c->rope_high_freq_factor, source));
      TIDAL_RETURN_IF_ERROR(ReadInt(*it, "original_max_position_embeddings", false,
                                    &c->rope_original_max_position_embeddings, source));
    } else if (type != "default") {
      return absl::UnimplementedError(absl::StrCat(source, ": ", key, ".rope_type \"", type,
                                                   "\" is not supported (only \"default\" and \"llama3\")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelConfig::Validate() const {
  if (model_type != "qwen2" && model_type != "qwen3" && model_type != "llama") {
    return absl::InvalidArgumentError(absl::StrCat(
        "model_type \"", model_type, "\" is not supported (expected qwen2, qwen3 or llama)"));
  }
  const std::pair<const char*, int64_t> positive[] = {
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"max_position_embeddings", max_position_embeddings}};
  for (const auto& [name, value] : positive) {
    if (value <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, " must be positive, found ", value));
    }
  }
  if (head_dim < 0) return absl::InvalidArgumentError(absl::StrCat("head_dim must be >= 0, found ", head_dim));
  if (head_dim == 0 && hidden_size % num_attention_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("hidden_size ", hidden_size,
                                                   " is not divisible by num_attention_heads ",
                                                   num_attention_heads, " (and head_dim is unset)"));
  }
  if (HeadDim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim must be even for RoPE, found ", HeadDim()));
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_attention_heads ", num_attention_heads,
                                                   " is not a multiple of num_key_value_heads ",
                                                   num_key_value_heads));
  }
  if (!(rope_theta > 0)) return absl::InvalidArgumentError(absl::StrCat("rope_theta must be positive, found ", rope_theta));
  if (rope_type != "default" && rope_type != "llama3") {
    return absl::InvalidArgumentError(absl::StrCat("rope_type \"", rope_type, "\" is not default or llama3"));
  }
  if (rope_type == "llama3" &&
      !(rope_factor > 0 && rope_low_freq_factor > 0 && rope_high_freq_factor > rope_low_freq_factor &&
        rope_original_max_position_embeddings > 0)) {
    return absl::InvalidArgumentError(
        "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
        "original_max_position_embeddings > 0");
  }
  if (!(rms_norm_eps > 0)) return absl::InvalidArgumentError(absl::StrCat("rms_norm_eps must be positive, found ", rms_norm_eps));
  // The HF classes hard-wire these per architecture; a config that disagrees would not load
  // into transformers with the same meaning.
  if (model_type == "qwen2" && (!attention_bias || qk_norm)) {
    return absl::InvalidArgumentError("qwen2 requires attention_bias=true and qk_norm=false");
  }
  if (model_type == "qwen3" && !qk_norm) return absl::InvalidArgumentError("qwen3 requires qk_norm=true");
  if (model_type == "llama" && qk_norm) return absl::InvalidArgumentError("llama requires qk_norm=false");
  if (torch_dtype != "float32" && torch_dtype != "bfloat16" && torch_dtype != "float16") {
    return absl::InvalidArgumentError(absl::StrCat("torch_dtype \"", torch_dtype,
                                                   "\" is not one of float32, bfloat16, float16"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ModelConfig::FromHfJson(const std::string& json_text,
                                                    const std::string& source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": missing string \"model_type\""));
  }
  c.model_type = mt->get<std::string>();
  if (c.model_type != "qwen2" && c.model_type != "qwen3" && c.model_type != "llama") {
    return absl::InvalidArgumentError(absl::StrCat(source, ": model_type \"", c.model_type,
                                                   "\" is not supported (qwen2, qwen3, llama)"));
  }
  TIDAL_RETURN_IF_ERROR(ReadInt(j, "vocab_size", true, &c.vocab_size, source));
  TIDAL_RETURN_IF_ERROR(ReadInt(j, "hidden_size", true, &c.hidden_size, source));
  TIDAL_RETURN_IF_ERROR(ReadInt(j, "intermediate_size", true, &c.intermediate_size, source));
  TIDAL_RETURN_IF_ERROR(ReadInt(j, "num_hidden_layers", true, &c.num_hidden_layers, source));
  TIDAL_RETURN_IF_ERROR(ReadInt(j, "num_attention_heads", true, &c.num_attention_heads, source));
  c.num_key_value_heads = c.num_attention_heads;  // HF default: no GQA
  TIDAL_RETURN_IF_ERROR(ReadInt(j, "num_key_value_heads", false, &c.num_key_value_heads, source));
  TIDAL_RETURN_IF_ERROR(ReadInt(j, "head_dim", false, &c.head_dim, source));
  TIDAL_RETURN_IF_ERROR(
      ReadInt(j, "max_position_embeddings", false, &c.max_position_embeddings, source));
  TIDAL_RETURN_IF_ERROR(ReadRope(j, &c, source));
  TIDAL_RETURN_IF_ERROR(ReadDouble(j, "rms_norm_eps", &c.rms_norm_eps, source));
  TIDAL_RETURN_IF_ERROR(ReadBool(j, "tie_word_embeddings", &c.tie_word_embeddings, source));
  TIDAL_RETURN_IF_ERROR(ReadInt(j, "bos_token_id", false, &c.bos_token_id, source));
  if (auto eos = j.find("eos_token_id"); eos != j.end() && !eos->is_null()) {
    if (eos->is_number_integer()) {
      c.eos_token_ids = {eos->get<int64_t>()};
    } else if (eos->is_array()) {
      for (const auto& e : *eos) {
        if (!e.is_number_integer()) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": \"eos_token_id\" must hold integers, found ", eos->dump()));
        }
        c.eos_token_ids.push_back(e.get<int64_t>());
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": \"eos_token_id\" must be an integer or a list, found ", eos->dump()));
    }
  }
  // transformers >= 5 writes "dtype", older versions "torch_dtype".
  for (const char* key : {"torch_dtype", "dtype"}) {
    auto d = j.find(key);
    if (d != j.end() && d->is_string()) c.torch_dtype = d->get<std::string>();
  }
  if (c.model_type == "qwen2") {
    c.attention_bias = true;  // Qwen2Attention always has q/k/v bias
  } else {
    TIDAL_RETURN_IF_ERROR(ReadBool(j, "attention_bias", &c.attention_bias, source));
  }
  c.qk_norm = c.model_type == "qwen3";

  // Features of these families that tidal does not implement: refuse rather than mis-compute.
  if (auto act = j.find("hidden_act"); act != j.end() && act->is_string() && *act != "silu") {
    return absl::UnimplementedError(absl::StrCat(source, ": hidden_act ", act->dump(), " is not supported (silu only)"));
  }
  bool flag = false;
  TIDAL_RETURN_IF_ERROR(ReadBool(j, "mlp_bias", &flag, source));
  if (flag) return absl::UnimplementedError(absl::StrCat(source, ": mlp_bias=true is not supported"));
  flag = false;
  TIDAL_RETURN_IF_ERROR(ReadBool(j, "use_sliding_window", &flag, source));
  if (flag) return absl::UnimplementedError(absl::StrCat(source, ": use_sliding_window=true is not supported"));
  if (auto lt = j.find("layer_types"); lt != j.end() && lt->is_array()) {
    for (const auto& t : *lt) {
      if (t != "full_attention") {
        return absl::UnimplementedError(
            absl::StrCat(source, ": layer_types entry ", t.dump(), " is not supported (full_attention only)"));
      }
    }
  }
  if (auto s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", s.message()));
  }
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::FromHfDir(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return FromHfJson(ss.str(), path);
}

std::string ModelConfig::ToHfJson() const {
  static const std::map<std::string, std::string> kArchitecture = {
      {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}, {"llama", "LlamaForCausalLM"}};
  json j;
  auto arch = kArchitecture.find(model_type);
  j["architectures"] = json::array({arch == kArchitecture.end() ? model_type : arch->second});
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = HeadDim();
  j["max_position_embeddings"] = max_position_embeddings;
  // Both spellings: transformers >= 5 reads rope_parameters, 4.x reads rope_theta.
  j["rope_theta"] = rope_theta;
  j["rope_parameters"] = {{"rope_type", rope_type}, {"rope_theta", rope_theta}};
  if (rope_type == "llama3") {
    json scaling = {{"rope_type", "llama3"},
                    {"factor", rope_factor},
                    {"low_freq_factor", rope_low_freq_factor},
                    {"high_freq_factor", rope_high_freq_factor},
                    {"original_max_position_embeddings", rope_original_max_position_embeddings}};
    j["rope_parameters"].update(scaling);
    j["rope_scaling"] = scaling;
  }
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  if (model_type != "qwen2") j["attention_bias"] = attention_bias;
  if (model_type != "llama") j["use_sliding_window"] = false;
  j["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  if (eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else {
    j["eos_token_id"] = eos_token_ids;
  }
  j["dtype"] = torch_dtype;
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

std::vector<ParamSpec> ParamSpecs(const ModelConfig& c) {
  const int64_t h = c.hidden_size, d = c.HeadDim(), i = c.intermediate_size;
  const int64_t q_out = c.num_attention_heads * d, kv_out = c.num_key_value_heads * d;
  std::vector<ParamSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    specs.push_back({p + "input_layernorm.weight", {h}});
    specs.push_back({p + "self_attn.q_proj.weight", {q_out, h}});
    if (c.attention_bias) specs.push_back({p + "self_attn.q_proj.bias", {q_out}});
    specs.push_back({p + "self_attn.k_proj.weight", {kv_out, h}});
    if (c.attention_bias) specs.push_back({p + "self_attn.k_proj.bias", {kv_out}});
    specs.push_back({p + "self_attn.v_proj.weight", {kv_out, h}});
    if (c.attention_bias) specs.push_back({p + "self_attn.v_proj.bias", {kv_out}});
    specs.push_back({p + "self_attn.o_proj.weight", {h, q_out}});
    if (c.qk_norm) {
      specs.push_back({p + "self_attn.q_norm.weight", {d}});
      specs.push_back({p + "self_attn.k_norm.weight", {d}});
    }
    specs.push_back({p + "post_attention_layernorm.weight", {h}});
    specs.push_back({p + "mlp.gate_proj.weight", {i, h}});
    specs.push_back({p + "mlp.up_proj.weight", {i, h}});
    specs.push_back({p + "mlp.down_proj.weight", {h, i}});
  }
  specs.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, h}});
  return specs;
}

ModelConfig TinyQwen2Config(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads,
                            int64_t vocab_size) {
  ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = vocab_size;
  c.hidden_size = hidden;
  c.intermediate_size = 4 * hidden;  // SwiGLU width; Qwen2's small models use ~5x, 4x is enough here
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.max_position_embeddings = 4096;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;  // as Qwen2's small models; halves the tiny model's parameters
  c.attention_bias = true;
  c.qk_norm = false;
  return c;
}

}  // namespace tidal
