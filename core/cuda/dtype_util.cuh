// Device helpers shared by every CUDA kernel in tidal (rollout engine, trainer, core): element
// conversion, rounding to the element type, 16-byte vector loads and stores, and launch checks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace tidal::cuda {

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

// Two consecutive elements as floats (p must be 2-element aligned).
__device__ __forceinline__ float2 LoadPair(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 LoadPair(const __half* p) {
  return __half22float2(*reinterpret_cast<const __half2*>(p));
}
__device__ __forceinline__ float2 LoadPair(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

template <typename T> __device__ __forceinline__ T FromFloat(float x);
template <> __device__ __forceinline__ float FromFloat<float>(float x) { return x; }
template <> __device__ __forceinline__ __half FromFloat<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// x rounded to T and back: where an ATen composite materialises an intermediate tensor in T.
template <typename T> __device__ __forceinline__ float Round(float x) { return ToFloat(FromFloat<T>(x)); }

// VEC consecutive elements; VEC * sizeof(T) == 16 gives one 128-bit memory transaction.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ void LoadFloats(const T* p, float (&out)[VEC]) {
  const Pack<T, VEC> pk = *reinterpret_cast<const Pack<T, VEC>*>(p);
#pragma unroll
  for (int i = 0; i < VEC; ++i) out[i] = ToFloat(pk.v[i]);
}

template <typename T, int VEC>
__device__ __forceinline__ void StoreFloats(T* p, const float (&in)[VEC]) {
  Pack<T, VEC> pk;
#pragma unroll
  for (int i = 0; i < VEC; ++i) pk.v[i] = FromFloat<T>(in[i]);
  *reinterpret_cast<Pack<T, VEC>*>(p) = pk;
}

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline void CheckLaunch(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string(kernel) + " launch failed: " + cudaGetErrorString(e));
  }
}

}  // namespace tidal::cuda
