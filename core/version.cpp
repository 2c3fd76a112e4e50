#include "core/version.h"

#include <torch/version.h>

namespace tidal {
std::string TorchVersion() { return TORCH_VERSION; }
}  // namespace tidal
