#include "weight_sync/bucket_ops.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "weight_sync/bucket_kernels.h"

#ifdef TIDAL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

namespace tidal::weight_sync {
namespace {

// A list of SegmentCopy segments, run by the CUDA kernel or by its CPU reference below.
struct Batch {
  std::vector<CopySegment> segs;
  int64_t tiles = 0;
  void Add(const void* src, bool f32, void* dst, uint64_t* checksum, int64_t numel, int64_t position) {
    if (numel == 0) return;
    CopySegment s;
    s.src = src;
    s.dst = static_cast<uint16_t*>(dst);
    s.checksum = checksum;
    s.numel = numel;
    s.position = position;
    s.first_tile = tiles;
    s.src_f32 = f32 ? 1 : 0;
    segs.push_back(s);
    tiles += (numel + kTileElements - 1) / kTileElements;
  }
};

uint16_t Bf16Bits(float f, uint32_t& bad) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7F800000u) == 0x7F800000u) {
    ++bad;
    if (u & 0x007FFFFFu) return 0x7FC0;
  }
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

void RunCpu(const Batch& b, uint32_t* nonfinite) {
  uint32_t bad = 0;
  for (const CopySegment& s : b.segs) {
    uint64_t sum = 0;
    for (int64_t k = 0; k < s.numel; ++k) {
      uint16_t o;
      if (s.src_f32) {
        o = Bf16Bits(static_cast<const float*>(s.src)[k], bad);
      } else {
        o = static_cast<const uint16_t*>(s.src)[k];
        if ((o & 0x7F80u) == 0x7F80u) ++bad;
      }
      if (s.dst) s.dst[k] = o;
      if (s.checksum) sum += ChecksumTerm(static_cast<uint32_t>(s.position + k), o);
    }
    if (s.checksum) *s.checksum += sum;
  }
  if (nonfinite) *nonfinite += bad;
}

#ifdef TIDAL_WITH_CUDA
void* Stream(const at::Device& d) { return c10::cuda::getCurrentCUDAStream(d.index()).stream(); }

// A host table as a device tensor, copied on the current stream through pinned memory (the
// caching allocators keep both alive until the stream has used them).
at::Tensor Upload(const void* data, size_t bytes, const at::Device& d) {
  at::Tensor host = at::empty({static_cast<int64_t>(bytes)}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), data, bytes);
  return host.to(d, /*non_blocking=*/true);
}

void CheckLaunch(int rc, const char* what) {
  TORCH_CHECK(rc == 0, "weight sync: ", what, " launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(rc)));
}
#endif

void Run(const Batch& b, const at::Device& d, uint32_t* nonfinite) {
  if (b.segs.empty()) return;
  if (d.is_cpu()) return RunCpu(b, nonfinite);
#ifdef TIDAL_WITH_CUDA
  TORCH_CHECK(d.is_cuda(), "weight sync: buckets on ", d.str(), " are not supported");
  // Raw launches go to the current device: a thread whose current device is another GPU (one
  // process driving two, as in the tests) would otherwise launch on the wrong one.
  const c10::cuda::CUDAGuard guard(d);
  at::Tensor table = Upload(b.segs.data(), b.segs.size() * sizeof(CopySegment), d);
  CheckLaunch(LaunchSegmentCopy(reinterpret_cast<const CopySegment*>(table.data_ptr()),
                                static_cast<int32_t>(b.segs.size()), b.tiles, nonfinite, Stream(d)),
              "SegmentCopy");
#else
  TORCH_CHECK(false, "weight sync: this build has no CUDA kernels (device ", d.str(), ")");
#endif
}

void InitTrailers(const std::vector<TrailerInit>& inits, const at::Device& d) {
  if (inits.empty()) return;
  if (d.is_cpu()) {
    for (const auto& t : inits) *t.dst = t.value;
    return;
  }
#ifdef TIDAL_WITH_CUDA
  const c10::cuda::CUDAGuard guard(d);
  at::Tensor table = Upload(inits.data(), inits.size() * sizeof(TrailerInit), d);
  CheckLaunch(LaunchInitTrailers(reinterpret_cast<const TrailerInit*>(table.data_ptr()),
                                 static_cast<int32_t>(inits.size()), Stream(d)),
              "InitTrailers");
#endif
}

std::byte* Base(const at::Tensor& t) { return static_cast<std::byte*>(t.data_ptr()); }

void CheckBuffer(const BucketLayout& layout, const at::Tensor& buf, int64_t bytes, const char* what) {
  TORCH_CHECK(buf.defined() && buf.scalar_type() == at::kByte && buf.is_contiguous(),
              "weight sync: ", what, " must be a contiguous uint8 tensor");
  TORCH_CHECK(buf.numel() >= bytes, "weight sync: ", what, " holds ", buf.numel(), " bytes, needs ", bytes);
}

void CheckParams(const BucketLayout& layout, std::span<const at::Tensor> ts, const at::Device& d, bool sources) {
  TORCH_CHECK(ts.size() == layout.params.size(), "weight sync: ", ts.size(), (sources ? " sources" : " targets"),
              " for ", layout.params.size(), " parameters");
  for (size_t p = 0; p < ts.size(); ++p) {
    const at::Tensor& t = ts[p];
    TORCH_CHECK(t.defined() && t.is_contiguous() && t.numel() == layout.param_numel[p] && t.device() == d,
                "weight sync: ", (sources ? "source" : "target"), " for '", layout.params[p].name,
                "' must be contiguous with ", layout.param_numel[p], " elements on ", d.str());
    if (sources) {
      TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, "weight sync: source '",
                  layout.params[p].name, "' must be float32 or bfloat16, is ", t.scalar_type());
    } else {
      TORCH_CHECK(t.scalar_type() == at::kBFloat16, "weight sync: target '", layout.params[p].name,
                  "' must be bfloat16, is ", t.scalar_type());
    }
  }
}

uint32_t* Counter(const at::Tensor& nonfinite, const at::Device& d) {
  if (!nonfinite.defined()) return nullptr;
  TORCH_CHECK(nonfinite.scalar_type() == at::kInt && nonfinite.numel() >= 1 && nonfinite.device() == d,
              "weight sync: the non-finite counter must be int32 on ", d.str());
  return static_cast<uint32_t*>(nonfinite.data_ptr());
}

uint64_t* Sums(const at::Tensor& checksums, const BucketLayout& layout, const at::Device& d) {
  TORCH_CHECK(checksums.scalar_type() == at::kLong && checksums.numel() >= layout.count() &&
                  checksums.is_contiguous() && checksums.device() == d,
              "weight sync: checksums must be int64 [", layout.count(), "] on ", d.str());
  return static_cast<uint64_t*>(checksums.data_ptr());
}

void AddPack(Batch& batch, std::vector<TrailerInit>& inits, const BucketLayout& layout, int32_t b,
             std::span<const at::Tensor> sources, std::byte* dst, int64_t version) {
  const BucketPlan& plan = layout.buckets[b];
  auto* trailer = reinterpret_cast<BucketTrailer*>(dst + plan.TrailerOffset(layout.element_bytes));
  TrailerInit init;
  init.dst = trailer;
  init.value = {0, version, plan.index, layout.count(), plan.numel};
  inits.push_back(init);
  for (const BucketSlot& s : plan.slots) {
    const at::Tensor& src = sources[s.param];
    batch.Add(src.data_ptr(), src.scalar_type() == at::kFloat, dst + s.offset * layout.element_bytes,
              &trailer->checksum, s.numel, s.offset);
  }
}

}  // namespace

at::Tensor BucketView(const BucketLayout& layout, const at::Tensor& staging, int32_t bucket) {
  const BucketPlan& plan = layout.buckets.at(bucket);
  return staging.narrow(0, plan.byte_offset, plan.WireBytes(layout.element_bytes));
}

void PackBucket(const BucketLayout& layout, int32_t bucket, std::span<const at::Tensor> sources,
                const at::Tensor& dst, int64_t version, const at::Tensor& nonfinite) {
  const at::Device d = dst.device();
  CheckBuffer(layout, dst, layout.buckets.at(bucket).WireBytes(layout.element_bytes), "bucket buffer");
  CheckParams(layout, sources, d, true);
  Batch batch;
  std::vector<TrailerInit> inits;
  AddPack(batch, inits, layout, bucket, sources, Base(dst), version);
  InitTrailers(inits, d);  // zeroes the checksum the kernel adds into: same stream, so first
  Run(batch, d, Counter(nonfinite, d));
}

void PackAll(const BucketLayout& layout, std::span<const at::Tensor> sources, const at::Tensor& staging,
             int64_t version, const at::Tensor& nonfinite) {
  const at::Device d = staging.device();
  CheckBuffer(layout, staging, layout.staging_bytes, "staging buffer");
  CheckParams(layout, sources, d, true);
  Batch batch;
  std::vector<TrailerInit> inits;
  for (int32_t b = 0; b < layout.count(); ++b) {
    AddPack(batch, inits, layout, b, sources, Base(staging) + layout.buckets[b].byte_offset, version);
  }
  InitTrailers(inits, d);
  Run(batch, d, Counter(nonfinite, d));
}

void ChecksumBuckets(const BucketLayout& layout, const at::Tensor& staging, int32_t first, int32_t last,
                     const at::Tensor& checksums) {
  const at::Device d = staging.device();
  CheckBuffer(layout, staging, layout.staging_bytes, "staging buffer");
  uint64_t* sums = Sums(checksums, layout, d);
  checksums.narrow(0, first, last - first).zero_();
  Batch batch;
  for (int32_t b = first; b < last; ++b) {
    const BucketPlan& plan = layout.buckets[b];
    batch.Add(Base(staging) + plan.byte_offset, false, nullptr, sums + b, plan.numel, 0);
  }
  Run(batch, d, nullptr);
}

at::Tensor GatherTrailers(const BucketLayout& layout, const at::Tensor& staging, int32_t first, int32_t last) {
  const at::Device d = staging.device();
  CheckBuffer(layout, staging, layout.staging_bytes, "staging buffer");
  const int64_t n = std::max(0, last - first);
  at::Tensor out = at::empty({n * static_cast<int64_t>(sizeof(BucketTrailer))}, at::TensorOptions().dtype(at::kByte).device(d));
  if (n == 0) return out;
  std::vector<const BucketTrailer*> src;
  for (int32_t b = first; b < last; ++b) {
    const BucketPlan& plan = layout.buckets[b];
    src.push_back(reinterpret_cast<const BucketTrailer*>(Base(staging) + plan.byte_offset +
                                                         plan.TrailerOffset(layout.element_bytes)));
  }
  if (d.is_cpu()) {
    for (int64_t i = 0; i < n; ++i) std::memcpy(Base(out) + i * sizeof(BucketTrailer), src[i], sizeof(BucketTrailer));
    return out;
  }
#ifdef TIDAL_WITH_CUDA
  const c10::cuda::CUDAGuard guard(d);
  at::Tensor table = Upload(src.data(), src.size() * sizeof(void*), d);
  CheckLaunch(LaunchGatherTrailers(reinterpret_cast<const BucketTrailer* const*>(table.data_ptr()),
                                   reinterpret_cast<BucketTrailer*>(out.data_ptr()), static_cast<int32_t>(n), Stream(d)),
              "GatherTrailers");
#endif
  return out;
}

absl::Status CheckTrailers(const BucketLayout& layout, const at::Tensor& trailers, const at::Tensor& checksums,
                           int32_t first, int32_t last, int64_t version) {
  TORCH_CHECK(trailers.is_cpu() && checksums.is_cpu() && checksums.scalar_type() == at::kLong,
              "weight sync: CheckTrailers takes host tensors");
  TORCH_CHECK(trailers.numel() >= (last - first) * static_cast<int64_t>(sizeof(BucketTrailer)) &&
                  checksums.numel() >= last - first,
              "weight sync: too few trailers or checksums");
  const auto* sums = static_cast<const uint64_t*>(checksums.data_ptr());
  for (int32_t b = first; b < last; ++b) {
    BucketTrailer t;
    std::memcpy(&t, Base(trailers) + (b - first) * sizeof(BucketTrailer), sizeof(t));
    TIDAL_RETURN_IF_ERROR(CheckTrailer(t, sums[b - first], version, layout.buckets[b], layout.count()));
  }
  return absl::OkStatus();
}

absl::Status VerifyBuckets(const BucketLayout& layout, const at::Tensor& staging, int32_t first, int32_t last,
                           const at::Tensor& checksums, int64_t version) {
  if (first >= last) return absl::OkStatus();
  at::Tensor trailers = GatherTrailers(layout, staging, first, last).cpu();  // waits for the stream
  return CheckTrailers(layout, trailers, checksums.narrow(0, first, last - first).cpu(), first, last, version);
}

void ApplyBuckets(const BucketLayout& layout, const at::Tensor& staging, int32_t first, int32_t last,
                  std::span<const at::Tensor> targets) {
  const at::Device d = staging.device();
  CheckBuffer(layout, staging, layout.staging_bytes, "staging buffer");
  CheckParams(layout, targets, d, false);
  Batch batch;
  for (int32_t b = first; b < last; ++b) {
    const BucketPlan& plan = layout.buckets[b];
    for (const BucketSlot& s : plan.slots) {
      batch.Add(Base(staging) + plan.byte_offset + s.offset * layout.element_bytes, false,
                targets[s.param].data_ptr(), nullptr, s.numel, s.offset);
    }
  }
  Run(batch, d, nullptr);
}

void PackDirect(const BucketLayout& layout, std::span<const at::Tensor> sources, std::span<const at::Tensor> targets,
                const at::Tensor& checksums, const at::Tensor& nonfinite) {
  TORCH_CHECK(!targets.empty(), "weight sync: no targets");
  const at::Device d = targets[0].device();
  CheckParams(layout, sources, d, true);
  CheckParams(layout, targets, d, false);
  uint64_t* sums = Sums(checksums, layout, d);
  checksums.zero_();
  Batch batch;
  for (const BucketPlan& plan : layout.buckets) {
    for (const BucketSlot& s : plan.slots) {
      const at::Tensor& src = sources[s.param];
      batch.Add(src.data_ptr(), src.scalar_type() == at::kFloat, targets[s.param].data_ptr(), sums + plan.index,
                s.numel, s.offset);
    }
  }
  Run(batch, d, Counter(nonfinite, d));
}

void ChecksumTargets(const BucketLayout& layout, std::span<const at::Tensor> targets, const at::Tensor& checksums) {
  TORCH_CHECK(!targets.empty(), "weight sync: no targets");
  const at::Device d = targets[0].device();
  CheckParams(layout, targets, d, false);
  uint64_t* sums = Sums(checksums, layout, d);
  checksums.zero_();
  Batch batch;
  for (const BucketPlan& plan : layout.buckets) {
    for (const BucketSlot& s : plan.slots) {
      batch.Add(targets[s.param].data_ptr(), false, nullptr, sums + plan.index, s.numel, s.offset);
    }
  }
  Run(batch, d, nullptr);
}

absl::Status CompareChecksums(const at::Tensor& expected, const at::Tensor& got, int64_t version) {
  at::Tensor e = expected.cpu(), g = got.cpu();
  const auto* pe = static_cast<const uint64_t*>(e.data_ptr());
  const auto* pg = static_cast<const uint64_t*>(g.data_ptr());
  for (int64_t b = 0; b < std::min(e.numel(), g.numel()); ++b) {
    if (pe[b] != pg[b]) {
      return absl::DataLossError(absl::StrFormat("weight version %d bucket %d: checksum mismatch (sent %016x, applied %016x)",
                                                 version, b, pe[b], pg[b]));
    }
  }
  return absl::OkStatus();
}

void CountNonFinite(const BucketLayout& layout, std::span<const at::Tensor> sources, const at::Tensor& nonfinite) {
  TORCH_CHECK(!sources.empty(), "weight sync: no sources");
  const at::Device d = sources[0].device();
  CheckParams(layout, sources, d, true);
  Batch batch;
  for (size_t p = 0; p < sources.size(); ++p) {
    batch.Add(sources[p].data_ptr(), sources[p].scalar_type() == at::kFloat, nullptr, nullptr, sources[p].numel(), 0);
  }
  Run(batch, d, Counter(nonfinite, d));
}

int64_t NonFinite(const at::Tensor& nonfinite) { return nonfinite.cpu().item<int32_t>(); }

}  // namespace tidal::weight_sync
