// Does a recipe fit its devices? Checks run before any worker starts, so that sizes that cannot
// work get one message naming the recipe key instead of a worker's crash ("train rank 0 exited
// with code 1") or an endless retry (a KV cache that cannot hold one sequence).
//
// The estimates are lower bounds (a run needs at least this much), so a rejected recipe really
// cannot run; a recipe that passes may still run out of memory for reasons not modelled here
// (activations, fragmentation).
//
// Contract: pure functions of their arguments except HostMemoryBytes (reads /proc/meminfo); any
// thread.
#pragma once

#include <cstdint>
#include <optional>

#include "core/model_config.h"
#include "core/recipe.h"
#include "core/status.h"

namespace tidal::scheduler {

// The engine's KV cache when rollout.kv_blocks is 0 (rollout::EngineConfig::kv_cache_bytes).
inline constexpr double kDefaultKvCacheBytes = 256.0 * (1 << 20);

// Lower bounds of the memory a run needs, in bytes.
struct MemoryNeeds {
  double params = 0;            // parameter count
  double train_per_rank = 0;    // fp32 weights + gradient + 2 AdamW moments, sharded (+ reference)
  double engine = 0;            // one engine's weights (model.dtype) + its KV cache
  double kv_block = 0;          // one KV block
  double kv_cache = 0;          // the engine's KV cache
  double kv_cache_tokens = 0;   // tokens the KV cache holds
};
MemoryNeeds EstimateMemory(const Recipe& recipe, const ModelConfig& config);

// Total host memory (MemTotal), or nullopt when it cannot be read.
std::optional<double> HostMemoryBytes();

// InvalidArgument naming the recipe keys when the KV cache cannot hold one completion, a block
// does not fit the cache (both against rollout.kv_blocks, or on CPU pools the engine's default
// cache; a CUDA engine with kv_blocks = 0 sizes its cache at run time), the completion length leaves no room for a prompt under the model
// length, or (when `device_memory_bytes` is known) the model cannot fit: on CPU pools every slot
// shares that memory; on CUDA pools it is one device's.
absl::Status CheckRecipeFits(const Recipe& recipe, const ModelConfig& config,
                             std::optional<double> device_memory_bytes);

// The same for a loaded recipe on this machine: builds the model config (loading the tokenizer
// for its vocabulary) and, on CPU pools, compares with the host's memory. CUDA pools get the
// size checks but no device-memory check (the controller does not touch the GPUs). The message
// starts with the recipe's file.
absl::Status CheckRecipeFitsHere(const Recipe& recipe);

}  // namespace tidal::scheduler
