// Model shapes the benchmarks use by name (random weights, real architectures' parameter
// lists): "qwen2.5-1.5b" / "1.5b", "qwen2.5-7b" / "7b", and "tiny" for smoke tests.
#pragma once

#include <string>

#include "core/model_config.h"

namespace tidal::cli {

absl::StatusOr<ModelConfig> BenchModelShape(const std::string& name);

}  // namespace tidal::cli
