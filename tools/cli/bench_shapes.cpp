#include "tools/cli/bench_shapes.h"

namespace tidal::cli {

absl::StatusOr<ModelConfig> BenchModelShape(const std::string& name) {
  ModelConfig c;
  c.model_type = "qwen2";
  c.attention_bias = true;
  c.torch_dtype = "bfloat16";
  c.rope_theta = 1000000.0;
  c.max_position_embeddings = 32768;
  if (name == "qwen2.5-1.5b" || name == "1.5b") {  // Qwen/Qwen2.5-1.5B config.json
    c.vocab_size = 151936;
    c.hidden_size = 1536;
    c.intermediate_size = 8960;
    c.num_hidden_layers = 28;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 2;
    c.tie_word_embeddings = true;
  } else if (name == "qwen2.5-7b" || name == "7b") {  // Qwen/Qwen2.5-7B config.json
    c.vocab_size = 152064;
    c.hidden_size = 3584;
    c.intermediate_size = 18944;
    c.num_hidden_layers = 28;
    c.num_attention_heads = 28;
    c.num_key_value_heads = 4;
  } else if (name == "tiny") {
    c = TinyQwen2Config(128, 2, 4, 2, 260);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown model shape '", name,
                                                   "' (qwen2.5-1.5b | 1.5b | qwen2.5-7b | 7b | tiny)"));
  }
  TIDAL_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace tidal::cli
