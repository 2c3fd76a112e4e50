// Build identity of this tidal binary.
#pragma once
#include <string>

namespace tidal {
inline constexpr const char* kVersion = "0.1.0";
#ifdef TIDAL_WITH_CUDA
inline constexpr bool kBuiltWithCuda = true;
#else
inline constexpr bool kBuiltWithCuda = false;
#endif
// LibTorch's version string (kept out of the header so callers need no torch include).
std::string TorchVersion();
}  // namespace tidal
