// The CUDA kernels' element type (core/cuda/dtype.h Dtype) for a LibTorch dtype: the one mapping
// shared by the rollout runner and sampler, the trainer's kernels and the kernel tests. Kept apart
// from dtype.h, which stays torch-free.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include "core/cuda/dtype.h"

namespace tidal::cuda {

// True for the dtypes the kernels are instantiated for (fp32, fp16, bf16).
inline bool KernelSupports(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16; }

inline Dtype KernelDtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return Dtype::kF32;
    case at::kHalf: return Dtype::kF16;
    case at::kBFloat16: return Dtype::kBF16;
    default: TORCH_CHECK(false, "CUDA kernels: unsupported dtype ", t);
  }
}

}  // namespace tidal::cuda
