// `tidal model inspect DIR [--json]`: what an HF checkpoint directory holds (architecture, sizes,
// parameter count, stored dtypes, tokenizer) and whether tidal can load it. Reads only the
// safetensors headers' worth of data (files are memory-mapped, tensors never touched).
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/hf_checkpoint.h"
#include "core/model_config.h"
#include "core/safetensors.h"
#include "tools/cli/command.h"

namespace {

struct Args {
  std::string dir;
  bool json = false;
};

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto args = std::make_shared<Args>();
  sub.add_option("dir", args->dir, "HF checkpoint directory (config.json + *.safetensors)")->required();
  sub.add_flag("--json", args->json, "Print as JSON");
  return [args]() -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(tidal::ModelConfig c, tidal::ModelConfig::FromHfDir(args->dir));
    int64_t params = 0;
    for (const tidal::ParamSpec& p : tidal::ParamSpecs(c)) {
      int64_t n = 1;
      for (int64_t d : p.shape) n *= d;
      params += n;
    }
    TIDAL_ASSIGN_OR_RETURN(tidal::NamedTensors weights, tidal::ReadHfWeights(args->dir));
    std::map<std::string, int64_t> dtype_counts;
    int64_t stored_bytes = 0;
    for (const auto& [name, t] : weights) {
      auto name_in_file = tidal::SafetensorsDtypeName(t.scalar_type());
      dtype_counts[name_in_file.ok() ? *name_in_file : c10::toString(t.scalar_type())]++;
      stored_bytes += t.nbytes();
    }
    const size_t stored_tensors = weights.size();
    tidal::DropIgnoredWeights(c, weights);
    absl::Status check = tidal::CheckWeights(c, weights, args->dir);
    const bool tokenizer = tidal::HasHfTokenizer(args->dir);

    if (args->json) {
      nlohmann::json j = {{"dir", args->dir},
                          {"model_type", c.model_type},
                          {"num_hidden_layers", c.num_hidden_layers},
                          {"hidden_size", c.hidden_size},
                          {"intermediate_size", c.intermediate_size},
                          {"num_attention_heads", c.num_attention_heads},
                          {"num_key_value_heads", c.num_key_value_heads},
                          {"head_dim", c.HeadDim()},
                          {"vocab_size", c.vocab_size},
                          {"tie_word_embeddings", c.tie_word_embeddings},
                          {"rope_theta", c.rope_theta},
                          {"parameters", params},
                          {"stored_tensors", stored_tensors},
                          {"stored_bytes", stored_bytes},
                          {"stored_dtypes", dtype_counts},
                          {"config_dtype", c.torch_dtype},
                          {"tokenizer_json", tokenizer},
                          {"loadable", check.ok()}};
      if (!check.ok()) j["problem"] = std::string(check.message());
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << "directory:    " << args->dir << "\n"
                << "architecture: " << c.model_type << (c.attention_bias ? " (qkv bias)" : "")
                << (c.qk_norm ? " (q/k norm)" : "") << "\n"
                << "layers:       " << c.num_hidden_layers << ", hidden " << c.hidden_size
                << ", intermediate " << c.intermediate_size << "\n"
                << "attention:    " << c.num_attention_heads << " heads, " << c.num_key_value_heads
                << " kv heads, head_dim " << c.HeadDim() << ", rope_theta " << c.rope_theta << "\n"
                << "vocab:        " << c.vocab_size
                << (c.tie_word_embeddings ? " (tied embeddings)" : " (untied lm_head)") << "\n"
                << "parameters:   " << params << " (" << absl::StrFormat("%.2fM", params / 1e6) << ")\n"
                << "stored:       " << stored_tensors << " tensors, " << stored_bytes << " bytes;";
      for (const auto& [dtype, n] : dtype_counts) std::cout << " " << dtype << " x" << n;
      std::cout << " (config dtype " << c.torch_dtype << ")\n"
                << "tokenizer:    " << (tokenizer ? "tokenizer.json present" : "none (no tokenizer.json)")
                << "\n";
    }
    return check;
  };
}

TIDAL_CLI_COMMAND("model inspect", "Describe an HF checkpoint directory and check that tidal can load it",
                  Setup);

}  // namespace
