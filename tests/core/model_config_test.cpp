#include "core/model_config.h"

#include <gtest/gtest.h>

#include <set>

namespace tidal {
namespace {

TEST(ModelConfigTest, TinyQwen2IsValidAndTied) {
  ModelConfig c = TinyQwen2Config(64, 2, 4, 2, 260);
  EXPECT_TRUE(c.Validate().ok());
  EXPECT_EQ(c.HeadDim(), 16);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);
}

TEST(ModelConfigTest, ValidateNamesTheBadField) {
  ModelConfig c = TinyQwen2Config(64, 2, 4, 3, 260);
  auto s = c.Validate();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("num_key_value_heads 3"), std::string::npos) << s;
  c = TinyQwen2Config(64, 2, 4, 2, 0);
  EXPECT_NE(c.Validate().message().find("vocab_size"), std::string::npos);
  c = TinyQwen2Config(64, 2, 4, 2, 10);
  c.model_type = "gpt2";
  EXPECT_NE(c.Validate().message().find("gpt2"), std::string::npos);
}

TEST(ModelConfigTest, ParamSpecsFollowArchitecture) {
  ModelConfig c = TinyQwen2Config(64, 2, 4, 2, 100);
  auto specs = ParamSpecs(c);
  // embed + 2 * (2 norms + 4 proj + 3 bias + 3 mlp) + final norm; tied: no lm_head.
  EXPECT_EQ(specs.size(), 1 + 2 * 12 + 1);
  EXPECT_EQ(specs.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(specs.back().name, "model.norm.weight");
  std::set<std::string> names;
  for (auto& s : specs) names.insert(s.name);
  EXPECT_EQ(names.size(), specs.size());
  EXPECT_TRUE(names.count("model.layers.1.self_attn.k_proj.bias"));
  for (auto& s : specs) {
    if (s.name == "model.layers.0.self_attn.k_proj.weight") {
      EXPECT_EQ(s.shape, (std::vector<int64_t>{32, 64}));
    }
  }

  c.model_type = "qwen3";
  c.attention_bias = false;
  c.qk_norm = true;
  c.tie_word_embeddings = false;
  c.head_dim = 32;
  names.clear();
  for (auto& s : ParamSpecs(c)) {
    names.insert(s.name);
    if (s.name == "model.layers.0.self_attn.q_proj.weight") EXPECT_EQ(s.shape, (std::vector<int64_t>{128, 64}));
    if (s.name == "model.layers.0.self_attn.q_norm.weight") EXPECT_EQ(s.shape, (std::vector<int64_t>{32}));
  }
  EXPECT_TRUE(names.count("lm_head.weight"));
  EXPECT_FALSE(names.count("model.layers.0.self_attn.q_proj.bias"));
}

TEST(ModelConfigTest, HfJsonRoundTrip) {
  ModelConfig c = TinyQwen2Config(64, 3, 4, 1, 300);
  c.rope_theta = 1e6;
  c.eos_token_ids = {5, 7};
  c.bos_token_id = 3;
  c.torch_dtype = "bfloat16";
  auto back = ModelConfig::FromHfJson(c.ToHfJson(), "mem");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToHfJson(), c.ToHfJson());
  EXPECT_EQ(back->rope_theta, 1e6);
  EXPECT_EQ(back->eos_token_ids, (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(back->num_key_value_heads, 1);
}

TEST(ModelConfigTest, ReadsTransformers5AndOlderSpellings) {
  const char* v5 = R"({"model_type": "qwen3", "vocab_size": 128, "hidden_size": 64,
    "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 128, "rope_parameters": {"rope_theta": 5e5,
    "rope_type": "default"}, "layer_types": ["full_attention", "full_attention"],
    "dtype": "bfloat16", "eos_token_id": 2, "tie_word_embeddings": true})";
  auto c = ModelConfig::FromHfJson(v5, "v5.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 5e5);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->HeadDim(), 128);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2}));

  const char* v4 = R"({"model_type": "qwen2", "vocab_size": 128, "hidden_size": 64,
    "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
    "rope_theta": 1000000.0, "torch_dtype": "float32", "sliding_window": 32768,
    "use_sliding_window": false})";
  c = ModelConfig::FromHfJson(v4, "v4.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_TRUE(c->attention_bias);
}

TEST(ModelConfigTest, RefusesWhatItCannotCompute) {
  auto bad = [](const std::string& extra) {
    return ModelConfig::FromHfJson(
        R"({"model_type": "llama", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4)" + extra + "}",
        "cfg.json");
  };
  ASSERT_TRUE(bad("").ok());
  auto s = bad(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 8.0})").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("yarn"), std::string::npos) << s;
  EXPECT_FALSE(bad(R"(, "hidden_act": "gelu")").ok());
  EXPECT_FALSE(bad(R"(, "mlp_bias": true)").ok());
  s = bad(R"(, "num_key_value_heads": 3)").status();
  EXPECT_NE(s.message().find("cfg.json"), std::string::npos) << s;
  s = ModelConfig::FromHfJson(R"({"model_type": "llama", "vocab_size": 128})", "x.json").status();
  EXPECT_NE(s.message().find("hidden_size"), std::string::npos) << s;
  EXPECT_FALSE(ModelConfig::FromHfJson("{not json", "y.json").ok());
  EXPECT_EQ(ModelConfig::FromHfDir("/nonexistent/dir").status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelConfigTest, ReadsLlama3RopeScaling) {
  const char* llama31 = R"({"model_type": "llama", "vocab_size": 128, "hidden_size": 64,
    "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
    "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}})";
  auto c = ModelConfig::FromHfJson(llama31, "llama31.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_type, "llama3");
  EXPECT_EQ(c->rope_factor, 8.0);
  EXPECT_EQ(c->rope_high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_original_max_position_embeddings, 8192);
  auto back = ModelConfig::FromHfJson(c->ToHfJson(), "back");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToHfJson(), c->ToHfJson());
  c->rope_high_freq_factor = 0.5;  // below low_freq_factor
  EXPECT_FALSE(c->Validate().ok());
}

}  // namespace
}  // namespace tidal
