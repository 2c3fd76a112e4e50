#include <cuda_runtime.h>

#include "weight_sync/bucket_kernels.h"

namespace tidal::weight_sync {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;  // elements per thread per step: one 16-byte bf16 vector
static_assert(kTileElements % (kThreads * kVec) == 0);

__device__ __forceinline__ uint16_t ToBf16(float f, uint32_t& bad) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7F800000u) == 0x7F800000u) {
    bad += 1;
    if (u & 0x007FFFFFu) return 0x7FC0;  // NaN
  }
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ uint16_t Bf16(uint16_t b, uint32_t& bad) {
  if ((b & 0x7F80u) == 0x7F80u) bad += 1;
  return b;
}

__device__ __forceinline__ int FindSegment(const CopySegment* segs, int32_t count, int64_t tile) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (segs[mid].first_tile <= tile) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads) SegmentCopyKernel(const CopySegment* segs, int32_t count,
                                                              uint32_t* nonfinite) {
  const int64_t tile = blockIdx.x;
  const CopySegment s = segs[FindSegment(segs, count, tile)];
  const int64_t begin = (tile - s.first_tile) * kTileElements;
  const int64_t end = min(begin + kTileElements, s.numel);
  uint64_t sum = 0;
  uint32_t bad = 0;
  const uint32_t pos0 = static_cast<uint32_t>(s.position);
  const bool aligned = (reinterpret_cast<uintptr_t>(s.src) % 16 == 0) &&
                       (reinterpret_cast<uintptr_t>(s.dst) % 16 == 0);
  auto scalar = [&](int64_t k) {
    uint16_t o = s.src_f32 ? ToBf16(static_cast<const float*>(s.src)[k], bad)
                           : Bf16(static_cast<const uint16_t*>(s.src)[k], bad);
    if (s.dst) s.dst[k] = o;
    if (s.checksum) sum += ChecksumTerm(pos0 + static_cast<uint32_t>(k), o);
  };
  if (aligned) {
    // Tiles start at multiples of kVec, so vectors stay aligned; one thread may hold a partial
    // vector at the segment's end.
    int64_t i = begin + static_cast<int64_t>(threadIdx.x) * kVec;
#pragma unroll 2
    for (; i + kVec <= end; i += kThreads * kVec) {
      uint16_t o[kVec];
      if (s.src_f32) {
        const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(s.src) + i);
        float4 v0 = p[0], v1 = p[1];
        o[0] = ToBf16(v0.x, bad); o[1] = ToBf16(v0.y, bad); o[2] = ToBf16(v0.z, bad); o[3] = ToBf16(v0.w, bad);
        o[4] = ToBf16(v1.x, bad); o[5] = ToBf16(v1.y, bad); o[6] = ToBf16(v1.z, bad); o[7] = ToBf16(v1.w, bad);
      } else {
        uint4 v = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(s.src) + i);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          o[2 * k] = Bf16(w[k] & 0xFFFF, bad);
          o[2 * k + 1] = Bf16(w[k] >> 16, bad);
        }
      }
      if (s.dst) {
        uint4 w;
        w.x = uint32_t{o[0]} | (uint32_t{o[1]} << 16);
        w.y = uint32_t{o[2]} | (uint32_t{o[3]} << 16);
        w.z = uint32_t{o[4]} | (uint32_t{o[5]} << 16);
        w.w = uint32_t{o[6]} | (uint32_t{o[7]} << 16);
        *reinterpret_cast<uint4*>(s.dst + i) = w;
      }
      if (s.checksum) {
        uint32_t key = (pos0 + static_cast<uint32_t>(i)) * kChecksumStep;
#pragma unroll
        for (int k = 0; k < kVec; ++k, key += kChecksumStep) sum += ChecksumTermKeyed(key, o[k]);
      }
    }
    for (int64_t k = i; k < end && k < i + kVec; ++k) scalar(k);
  } else {
    for (int64_t k = begin + threadIdx.x; k < end; k += kThreads) scalar(k);
  }
  // Block reduction: one 64-bit atomic per tile keeps contention low.
  __shared__ uint64_t warp_sum[kThreads / 32];
  __shared__ uint32_t warp_bad[kThreads / 32];
  for (int off = 16; off > 0; off /= 2) {
    sum += __shfl_down_sync(0xFFFFFFFFu, static_cast<unsigned long long>(sum), off);
    bad += __shfl_down_sync(0xFFFFFFFFu, bad, off);
  }
  if ((threadIdx.x & 31) == 0) {
    warp_sum[threadIdx.x / 32] = sum;
    warp_bad[threadIdx.x / 32] = bad;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    uint64_t t = 0;
    uint32_t b = 0;
    for (int w = 0; w < kThreads / 32; ++w) {
      t += warp_sum[w];
      b += warp_bad[w];
    }
    if (s.checksum) atomicAdd(reinterpret_cast<unsigned long long*>(s.checksum), static_cast<unsigned long long>(t));
    if (nonfinite && b) atomicAdd(nonfinite, b);
  }
}

__global__ void InitTrailersKernel(const TrailerInit* inits, int32_t count) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) *inits[i].dst = inits[i].value;
}

__global__ void GatherTrailersKernel(const BucketTrailer* const* src, BucketTrailer* out, int32_t count) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i] = *src[i];
}

}  // namespace

int LaunchSegmentCopy(const CopySegment* segments, int32_t count, int64_t total_tiles,
                      uint32_t* nonfinite, void* stream) {
  if (count <= 0 || total_tiles <= 0) return cudaSuccess;
  SegmentCopyKernel<<<static_cast<unsigned>(total_tiles), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      segments, count, nonfinite);
  return cudaGetLastError();
}

int LaunchInitTrailers(const TrailerInit* inits, int32_t count, void* stream) {
  if (count <= 0) return cudaSuccess;
  InitTrailersKernel<<<(count + 127) / 128, 128, 0, static_cast<cudaStream_t>(stream)>>>(inits, count);
  return cudaGetLastError();
}

int LaunchGatherTrailers(const BucketTrailer* const* src, BucketTrailer* out, int32_t count, void* stream) {
  if (count <= 0) return cudaSuccess;
  GatherTrailersKernel<<<(count + 127) / 128, 128, 0, static_cast<cudaStream_t>(stream)>>>(src, out, count);
  return cudaGetLastError();
}

}  // namespace tidal::weight_sync
