// Hugging Face checkpoint directories: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json. Model::LoadHf / Model::SaveHf (core/model.h) are built on these.
//
// Contract: errors are statuses naming the file and tensor at fault (missing, unexpected, wrong
// shape or dtype, truncated shard). Loaded tensors are CPU views into the memory-mapped files
// (see core/safetensors.h) until cast; nothing here keeps global state.
#pragma once

#include <string>

#include "core/model.h"
#include "core/model_config.h"
#include "core/status.h"

namespace tidal {

// Every tensor stored in `dir`, as stored (no cast, no name checks). Reads the index when
// present, else model.safetensors; checks that each indexed name is in the shard it names.
absl::StatusOr<NamedTensors> ReadHfWeights(const std::string& dir);

// Checks `weights` against ParamSpecs(config): all present, none unexpected, shapes equal,
// floating dtypes. `source` prefixes messages. Lists up to a few offenders of each kind.
absl::Status CheckWeights(const ModelConfig& config, const NamedTensors& weights,
                          const std::string& source);

// Drops names HF checkpoints may carry that the model does not use: a tied lm_head.weight and
// rotary inv_freq buffers.
void DropIgnoredWeights(const ModelConfig& config, NamedTensors& weights);

// Writes config.json (torch_dtype set from the weights) and model.safetensors.
absl::Status WriteHfCheckpoint(const std::string& dir, const ModelConfig& config,
                               const NamedTensors& weights);

// Whether `dir` holds a tokenizer.json (tokenizers are loaded elsewhere; inspect reports this).
bool HasHfTokenizer(const std::string& dir);

}  // namespace tidal
