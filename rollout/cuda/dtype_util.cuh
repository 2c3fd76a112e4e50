// Device helpers shared by the rollout kernels. Element conversion, rounding and the launch
// check have one home, core/cuda/dtype_util.cuh (the trainer's fused kernels use them too);
// this adds the rollout-only pair load.
#pragma once

#include "core/cuda/dtype_util.cuh"

namespace tidal::rollout::cuda {

using tidal::cuda::CheckLaunch;
using tidal::cuda::FromFloat;
using tidal::cuda::Round;
using tidal::cuda::ToFloat;

// Two consecutive elements as floats (p must be 2-element aligned).
__device__ __forceinline__ float2 LoadPair(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 LoadPair(const __half* p) {
  return __half22float2(*reinterpret_cast<const __half2*>(p));
}
__device__ __forceinline__ float2 LoadPair(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

}  // namespace tidal::rollout::cuda
