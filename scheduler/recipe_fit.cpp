#include "scheduler/recipe_fit.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/tokenizer.h"
#include "scheduler/model_setup.h"

namespace tidal::scheduler {
namespace {

std::string Bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (b >= 1024 && u < 6) {
    b /= 1024;
    ++u;
  }
  return absl::StrFormat("%.1f %s", b, units[u]);
}

}  // namespace

MemoryNeeds EstimateMemory(const Recipe& recipe, const ModelConfig& config) {
  MemoryNeeds m;
  // Doubles throughout: absurd sizes (hidden = 1e6) must not overflow before they are reported.
  for (const ParamSpec& p : ParamSpecs(config)) {
    double n = 1;
    for (int64_t d : p.shape) n *= static_cast<double>(d);
    m.params += n;
  }
  const double train_ranks = std::max<int64_t>(1, recipe.pool.tags.train);
  const double per_param = 16 + (recipe.algo.kl_coef != 0 ? 4 : 0);  // weights, grad, 2 moments, ref
  m.train_per_rank = m.params * per_param / train_ranks;
  const double dtype_bytes = recipe.model.dtype == ModelDtype::kBFloat16 ? 2 : 4;
  const double head_dim = static_cast<double>(config.HeadDim());
  m.kv_block = 2.0 * static_cast<double>(config.num_hidden_layers) * static_cast<double>(recipe.rollout.block_size) *
               static_cast<double>(config.num_key_value_heads) * head_dim * dtype_bytes;
  const double blocks = recipe.rollout.kv_blocks > 0 ? static_cast<double>(recipe.rollout.kv_blocks)
                                                     : std::floor(kDefaultKvCacheBytes / m.kv_block);
  m.kv_cache = blocks * m.kv_block;
  m.kv_cache_tokens = blocks * static_cast<double>(recipe.rollout.block_size);
  m.engine = m.params * dtype_bytes + m.kv_cache;
  return m;
}

std::optional<double> HostMemoryBytes() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return std::nullopt;
  char line[256];
  std::optional<double> total;
  while (std::fgets(line, sizeof line, f)) {
    unsigned long long kib = 0;
    if (std::sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
      total = static_cast<double>(kib) * 1024;
      break;
    }
  }
  std::fclose(f);
  return total;
}

absl::Status CheckRecipeFits(const Recipe& recipe, const ModelConfig& config,
                             std::optional<double> device_memory_bytes) {
  const MemoryNeeds m = EstimateMemory(recipe, config);
  const auto& ro = recipe.rollout;
  std::vector<std::string> problems;
  const int64_t max_len = config.max_position_embeddings;
  if (ro.max_new_tokens >= max_len) {
    problems.push_back(absl::StrFormat(
        "rollout.max_new_tokens (%d) leaves no room for a prompt under the model length of %d tokens "
        "(max_position_embeddings)",
        ro.max_new_tokens, max_len));
  }
  // On CUDA an engine may size its cache from the device's free memory: with rollout.kv_blocks
  // = 0 only CPU pools have the fixed default cache to check against.
  const bool fixed_cache = recipe.rollout.kv_blocks > 0 || recipe.pool.device_set.kind == DeviceSet::Kind::kCpu;
  if (fixed_cache && recipe.rollout.kv_blocks == 0 && m.kv_block > kDefaultKvCacheBytes) {
    problems.push_back(absl::StrFormat(
        "rollout.block_size (%d): one KV block takes %s, more than the engine's KV cache of %s "
        "(rollout.kv_blocks = 0 sizes the cache at %s); use a block of 16-256 tokens",
        ro.block_size, Bytes(m.kv_block), Bytes(kDefaultKvCacheBytes), Bytes(kDefaultKvCacheBytes)));
  } else if (fixed_cache) {
    // One completion: at least one prompt token plus max_new_tokens, capped by the model length.
    const double tokens = std::min<double>(1.0 + static_cast<double>(ro.max_new_tokens), static_cast<double>(max_len));
    const double need = std::ceil(tokens / static_cast<double>(ro.block_size)) * static_cast<double>(ro.block_size);
    if (m.kv_cache_tokens < need) {
      problems.push_back(absl::StrFormat(
          "the KV cache holds %.0f tokens (rollout.kv_blocks = %d x rollout.block_size = %d), fewer than "
          "one completion needs (%.0f: a prompt token + rollout.max_new_tokens = %d)",
          m.kv_cache_tokens, ro.kv_blocks, ro.block_size, need, ro.max_new_tokens));
    }
  }
  if (device_memory_bytes) {
    const bool cpu = recipe.pool.device_set.kind == DeviceSet::Kind::kCpu;
    const double rollout_engines = static_cast<double>(std::max<int64_t>(
        recipe.pool.policy == PoolPolicy::kStatic ? recipe.pool.tags.rollout : recipe.pool.device_set.size(), 1));
    // CPU slots share the host: every rank's shard and every engine count against it. A GPU holds
    // one rank's shard and, when its tag can move, an engine too.
    const double need = cpu ? m.train_per_rank * static_cast<double>(std::max<int64_t>(1, recipe.pool.tags.train)) +
                                  m.engine * rollout_engines
                            : std::max(m.train_per_rank, m.engine);
    if (need > *device_memory_bytes) {
      const std::string keys = recipe.model.path.empty()
                                   ? absl::StrFormat("model.size (hidden %d, layers %d, vocab %d)",
                                                     config.hidden_size, config.num_hidden_layers, config.vocab_size)
                                   : absl::StrCat("model.path (", recipe.model.path, ")");
      problems.push_back(absl::StrFormat(
          "%s: the model has %.3g parameters and needs at least %s (%s per train rank: fp32 weights, "
          "gradients and two AdamW moments, sharded over pool.tags.train = %d; %s per rollout engine), but %s "
          "has %s",
          keys, m.params, Bytes(need), Bytes(m.train_per_rank), recipe.pool.tags.train, Bytes(m.engine),
          cpu ? "this host" : "one device", Bytes(*device_memory_bytes)));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("recipe cannot run: ", absl::StrJoin(problems, "; ")));
}

absl::Status CheckRecipeFitsHere(const Recipe& recipe) {
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(recipe.model.tokenizer));
  TIDAL_ASSIGN_OR_RETURN(ModelConfig config, ModelConfigFromRecipe(recipe, *tokenizer));
  std::optional<double> memory;
  if (recipe.pool.device_set.kind == DeviceSet::Kind::kCpu) memory = HostMemoryBytes();
  absl::Status s = CheckRecipeFits(recipe, config, memory);
  if (s.ok()) return s;
  return absl::InvalidArgumentError(
      absl::StrCat(recipe.source_path.empty() ? "recipe" : recipe.source_path, ": ", s.message()));
}

}  // namespace tidal::scheduler
