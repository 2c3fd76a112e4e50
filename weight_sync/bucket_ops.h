// The data-path steps of the GPU weight path, on one device (CUDA or CPU), built from the
// fused SegmentCopy kernel (weight_sync/bucket_kernels.h) and its CPU reference:
//   pack      sources (fp32 masters or bf16) -> a bucket's bf16 data + trailer (checksum, stamp)
//   checksum  a received bucket's data -> its checksum (the receiver's verification)
//   verify    received trailers vs the computed checksums and the expected stamps
//   apply     verified buckets -> the engine's parameter tensors, in place
//   direct    sources -> the engine's tensors in one pass (in-process: no bucket at all)
//
// Contract:
// - `sources` and `targets` are indexed like BucketLayout::params: contiguous tensors with the
//   parameter's number of elements, on the buffers' device. Sources are fp32 or bf16; targets
//   and buffers are bf16 / uint8 respectively. Mismatches throw c10::Error (TORCH_CHECK).
// - A bucket buffer is a uint8 tensor of at least the bucket's WireBytes; a staging buffer holds
//   a whole version (layout.staging_bytes), bucket b at plan.byte_offset.
// - CUDA: every step is queued on the device's current stream and returns without waiting,
//   except VerifyBuckets / NonFinite, which copy a few bytes to the host and wait for them.
//   CPU: every step runs to completion. Descriptor tables travel through pinned memory.
// - No state: any thread, as long as the buffers are not written concurrently.
#pragma once

#include <ATen/ATen.h>

#include <span>

#include "weight_sync/bucket_layout.h"

namespace tidal::weight_sync {

// Bytes [plan.byte_offset, + WireBytes) of a staging buffer.
at::Tensor BucketView(const BucketLayout& layout, const at::Tensor& staging, int32_t bucket);

// Packs bucket `bucket` into `dst` (WireBytes long) and stamps its trailer with `version`.
// `nonfinite` (int32 [1], same device, optional) accumulates non-finite source values.
void PackBucket(const BucketLayout& layout, int32_t bucket, std::span<const at::Tensor> sources,
                const at::Tensor& dst, int64_t version, const at::Tensor& nonfinite = {});
// Every bucket into a staging buffer, in one launch.
void PackAll(const BucketLayout& layout, std::span<const at::Tensor> sources,
             const at::Tensor& staging, int64_t version, const at::Tensor& nonfinite = {});

// checksums[b] (int64 [count], same device) <- checksum of bucket b's data in `staging`, for b
// in [first, last). Zeroes those entries first.
void ChecksumBuckets(const BucketLayout& layout, const at::Tensor& staging, int32_t first,
                     int32_t last, const at::Tensor& checksums);
// The trailers of buckets [first, last), gathered into one uint8 tensor [n * 32] on the
// staging buffer's device (queued; nothing waits).
at::Tensor GatherTrailers(const BucketLayout& layout, const at::Tensor& staging, int32_t first, int32_t last);
// Host-side check of gathered trailers (CPU uint8) against host checksums (CPU int64, one per
// bucket of [first, last)) and the expected stamp; the first mismatch as DataLoss.
absl::Status CheckTrailers(const BucketLayout& layout, const at::Tensor& trailers, const at::Tensor& checksums,
                           int32_t first, int32_t last, int64_t version);
// GatherTrailers + CheckTrailers against `checksums` (indexed by bucket). Waits for the device.
absl::Status VerifyBuckets(const BucketLayout& layout, const at::Tensor& staging, int32_t first,
                           int32_t last, const at::Tensor& checksums, int64_t version);

// targets <- buckets [first, last) of `staging` (bf16 to bf16).
void ApplyBuckets(const BucketLayout& layout, const at::Tensor& staging, int32_t first,
                  int32_t last, std::span<const at::Tensor> targets);

// In-process: targets <- bf16(sources), checksums[b] <- checksum of what bucket b would carry.
void PackDirect(const BucketLayout& layout, std::span<const at::Tensor> sources,
                std::span<const at::Tensor> targets, const at::Tensor& checksums,
                const at::Tensor& nonfinite = {});
// checksums[b] <- checksum of the targets' contents, bucket by bucket (the in-process verify).
void ChecksumTargets(const BucketLayout& layout, std::span<const at::Tensor> targets,
                     const at::Tensor& checksums);
// DataLoss naming the first bucket where expected != got. Waits for the device.
absl::Status CompareChecksums(const at::Tensor& expected, const at::Tensor& got, int64_t version);

// nonfinite += non-finite values among the sources (one read of them, nothing written): the
// check that lets an in-process update refuse a version before touching the engine.
void CountNonFinite(const BucketLayout& layout, std::span<const at::Tensor> sources, const at::Tensor& nonfinite);

// Reads the non-finite counter. Waits for the device.
int64_t NonFinite(const at::Tensor& nonfinite);

}  // namespace tidal::weight_sync
