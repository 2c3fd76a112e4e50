#include "scheduler/model_setup.h"

namespace tidal::scheduler {

absl::StatusOr<ModelConfig> ModelConfigFromRecipe(const Recipe& recipe, const Tokenizer& tokenizer) {
  const auto& m = recipe.model;
  ModelConfig c;
  if (!m.path.empty()) {
    TIDAL_ASSIGN_OR_RETURN(c, ModelConfig::FromHfDir(m.path));
  } else {
    int64_t vocab = m.size.vocab > 0 ? m.size.vocab : tokenizer.VocabSize();
    c = TinyQwen2Config(m.size.hidden, m.size.layers, m.size.heads, m.size.kv_heads, vocab);
    c.model_type = std::string(EnumName(m.arch));
    c.intermediate_size = m.IntermediateSize();
    if (m.rope_theta > 0) c.rope_theta = m.rope_theta;
    c.tie_word_embeddings = m.tie_embeddings;
    c.attention_bias = m.arch == ModelArch::kQwen2;
    c.qk_norm = m.arch == ModelArch::kQwen3;
    c.torch_dtype = m.dtype == ModelDtype::kBFloat16 ? "bfloat16" : "float32";
    if (auto eos = tokenizer.Specials().eos) c.eos_token_ids = {*eos};
  }
  if (c.vocab_size < tokenizer.VocabSize()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model: vocabulary %d is smaller than the tokenizer's %d (%s)", c.vocab_size,
        tokenizer.VocabSize(), tokenizer.Describe()));
  }
  TIDAL_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace tidal::scheduler
