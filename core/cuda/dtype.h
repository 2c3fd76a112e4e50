// The element type of tidal's CUDA kernels (rollout engine, trainer): torch-free, so kernel
// headers stay light. core/cuda/kernel_dtype.h maps LibTorch dtypes onto it.
#pragma once

namespace tidal::cuda {

enum class Dtype { kF32, kF16, kBF16 };

}  // namespace tidal::cuda
