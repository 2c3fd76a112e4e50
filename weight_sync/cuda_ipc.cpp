#include "weight_sync/cuda_ipc.h"

#include <unistd.h>

#include "weight_sync/bucket_ops.h"

#ifdef TIDAL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

namespace tidal::weight_sync {
namespace {

std::string Hex(const void* p, size_t n) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    uint8_t b = static_cast<const uint8_t*>(p)[i];
    s += k[b >> 4];
    s += k[b & 15];
  }
  return s;
}

absl::Status Unhex(const std::string& s, void* out, size_t n, const char* what) {
  if (s.size() != 2 * n) {
    return absl::InvalidArgumentError(absl::StrFormat("CUDA IPC notice: %s has %d hex digits, expected %d", what,
                                                      s.size(), 2 * n));
  }
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < n; ++i) {
    int hi = val(s[2 * i]), lo = val(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError(absl::StrCat("CUDA IPC notice: bad hex in ", what));
    static_cast<uint8_t*>(out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return absl::OkStatus();
}

#ifdef TIDAL_WITH_CUDA
#define TIDAL_IPC_CUDA(expr)                                                                          \
  do {                                                                                                \
    cudaError_t tidal_ipc_r_ = (expr);                                                                \
    if (tidal_ipc_r_ != cudaSuccess)                                                                  \
      return absl::InternalError(absl::StrCat(__FILE__, ":", __LINE__, ": ", #expr, " failed: ",      \
                                              cudaGetErrorString(tidal_ipc_r_)));                    \
  } while (0)
#endif

}  // namespace

#ifdef TIDAL_WITH_CUDA

struct IpcExporter::Impl {
  BucketLayout layout;
  int device = 0;
  void* buffer = nullptr;
  cudaEvent_t event = nullptr;
  at::Tensor staging, nonfinite;
  std::string mem_hex, event_hex;
  int64_t outstanding = -1;  // published and not yet released
  ~Impl() {
    c10::cuda::CUDAGuard g(device);
    if (event) cudaEventDestroy(event);
    if (buffer) cudaFree(buffer);
  }
};

IpcExporter::IpcExporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IpcExporter::~IpcExporter() = default;
const at::Tensor& IpcExporter::staging() const { return impl_->staging; }

absl::StatusOr<std::unique_ptr<IpcExporter>> IpcExporter::Create(BucketLayout layout, int device) {
  auto impl = std::make_unique<Impl>();
  impl->layout = std::move(layout);
  impl->device = device;
  c10::cuda::CUDAGuard g(device);
  TIDAL_IPC_CUDA(cudaMalloc(&impl->buffer, impl->layout.staging_bytes));
  TIDAL_IPC_CUDA(cudaEventCreateWithFlags(&impl->event, cudaEventDisableTiming | cudaEventInterprocess));
  cudaIpcMemHandle_t mh;
  cudaIpcEventHandle_t eh;
  TIDAL_IPC_CUDA(cudaIpcGetMemHandle(&mh, impl->buffer));
  TIDAL_IPC_CUDA(cudaIpcGetEventHandle(&eh, impl->event));
  impl->mem_hex = Hex(&mh, sizeof(mh));
  impl->event_hex = Hex(&eh, sizeof(eh));
  auto opts = at::TensorOptions().dtype(at::kByte).device(at::kCUDA, device);
  impl->staging = at::from_blob(impl->buffer, {impl->layout.staging_bytes}, opts);
  impl->nonfinite = at::zeros({1}, opts.dtype(at::kInt));
  return std::unique_ptr<IpcExporter>(new IpcExporter(std::move(impl)));
}

absl::StatusOr<IpcNotice> IpcExporter::Publish(std::span<const at::Tensor> sources, int64_t version) {
  Impl& m = *impl_;
  if (m.outstanding >= 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "CUDA IPC: version %d is still mapped by the engine (no release yet); cannot publish %d", m.outstanding,
        version));
  }
  c10::cuda::CUDAGuard g(m.device);
  m.nonfinite.zero_();
  try {
    PackAll(m.layout, sources, m.staging, version, m.nonfinite);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(e.what_without_backtrace());
  }
  const int64_t bad = NonFinite(m.nonfinite);  // waits for the pack
  if (bad != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "weight version %d has %d non-finite values; not published", version, bad));
  }
  TIDAL_IPC_CUDA(cudaEventRecord(m.event, c10::cuda::getCurrentCUDAStream(m.device).stream()));
  m.outstanding = version;
  return IpcNotice{version, m.device, m.layout.staging_bytes, m.mem_hex, m.event_hex, static_cast<int32_t>(getpid())};
}

void IpcExporter::Released(int64_t version) {
  if (version == impl_->outstanding) impl_->outstanding = -1;
}

struct IpcImporter::Impl {
  BucketLayout layout;
  int device = 0;
  std::string mem_hex;
  void* mapped = nullptr;
  cudaEvent_t event = nullptr;
  at::Tensor view, checksums;
  int64_t ready_version = -1, pending = -1;
  void Close() {
    c10::cuda::CUDAGuard g(device);
    if (event) cudaEventDestroy(event);
    if (mapped) cudaIpcCloseMemHandle(mapped);
    event = nullptr;
    mapped = nullptr;
  }
  ~Impl() { Close(); }
};

IpcImporter::IpcImporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IpcImporter::~IpcImporter() = default;
const at::Tensor& IpcImporter::mapped() const { return impl_->view; }

absl::StatusOr<std::unique_ptr<IpcImporter>> IpcImporter::Create(BucketLayout layout, int device) {
  auto impl = std::make_unique<Impl>();
  impl->layout = std::move(layout);
  impl->device = device;
  impl->checksums = at::zeros({impl->layout.count()}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA, device));
  return std::unique_ptr<IpcImporter>(new IpcImporter(std::move(impl)));
}

absl::Status IpcImporter::Receive(const IpcNotice& n) {
  Impl& m = *impl_;
  m.ready_version = -1;
  if (n.device != m.device || n.bytes != m.layout.staging_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "CUDA IPC: notice for device %d / %d bytes, this engine is on device %d with a %d-byte layout", n.device,
        n.bytes, m.device, m.layout.staging_bytes));
  }
  c10::cuda::CUDAGuard g(m.device);
  if (n.memory_handle != m.mem_hex) {
    m.Close();
    cudaIpcMemHandle_t mh;
    cudaIpcEventHandle_t eh;
    TIDAL_RETURN_IF_ERROR(Unhex(n.memory_handle, &mh, sizeof(mh), "memory_handle"));
    TIDAL_RETURN_IF_ERROR(Unhex(n.event_handle, &eh, sizeof(eh), "event_handle"));
    TIDAL_IPC_CUDA(cudaIpcOpenMemHandle(&m.mapped, mh, cudaIpcMemLazyEnablePeerAccess));
    TIDAL_IPC_CUDA(cudaIpcOpenEventHandle(&m.event, eh));
    m.mem_hex = n.memory_handle;
    m.view = at::from_blob(m.mapped, {m.layout.staging_bytes},
                           at::TensorOptions().dtype(at::kByte).device(at::kCUDA, m.device));
  }
  m.pending = n.version;
  cudaStream_t s = c10::cuda::getCurrentCUDAStream(m.device).stream();
  TIDAL_IPC_CUDA(cudaStreamWaitEvent(s, m.event, 0));
  ChecksumBuckets(m.layout, m.view, 0, m.layout.count(), m.checksums);
  TIDAL_RETURN_IF_ERROR(VerifyBuckets(m.layout, m.view, 0, m.layout.count(), m.checksums, n.version));
  m.ready_version = n.version;
  return absl::OkStatus();
}

absl::Status IpcImporter::Apply(std::span<const at::Tensor> targets) {
  Impl& m = *impl_;
  if (m.ready_version < 0) return absl::FailedPreconditionError("CUDA IPC: no verified version to apply");
  c10::cuda::CUDAGuard g(m.device);
  try {
    ApplyBuckets(m.layout, m.view, 0, m.layout.count(), targets);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(e.what_without_backtrace());
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> IpcImporter::Release() {
  Impl& m = *impl_;
  c10::cuda::CUDAGuard g(m.device);
  TIDAL_IPC_CUDA(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream(m.device).stream()));
  int64_t v = m.pending;
  m.pending = -1;
  return v;
}

#else  // !TIDAL_WITH_CUDA

struct IpcExporter::Impl {};
struct IpcImporter::Impl {};
IpcExporter::IpcExporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IpcExporter::~IpcExporter() = default;
IpcImporter::IpcImporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IpcImporter::~IpcImporter() = default;
absl::StatusOr<std::unique_ptr<IpcExporter>> IpcExporter::Create(BucketLayout, int) {
  return absl::UnimplementedError("CUDA IPC needs a CUDA build (TIDAL_CUDA=ON)");
}
absl::StatusOr<std::unique_ptr<IpcImporter>> IpcImporter::Create(BucketLayout, int) {
  return absl::UnimplementedError("CUDA IPC needs a CUDA build (TIDAL_CUDA=ON)");
}
absl::StatusOr<IpcNotice> IpcExporter::Publish(std::span<const at::Tensor>, int64_t) {
  return absl::UnimplementedError("CUDA IPC needs a CUDA build");
}
void IpcExporter::Released(int64_t) {}
absl::Status IpcImporter::Receive(const IpcNotice&) { return absl::UnimplementedError("CUDA IPC needs a CUDA build"); }
absl::Status IpcImporter::Apply(std::span<const at::Tensor>) {
  return absl::UnimplementedError("CUDA IPC needs a CUDA build");
}
absl::StatusOr<int64_t> IpcImporter::Release() { return absl::UnimplementedError("CUDA IPC needs a CUDA build"); }
const at::Tensor& IpcExporter::staging() const {
  static const at::Tensor none;
  return none;
}
const at::Tensor& IpcImporter::mapped() const {
  static const at::Tensor none;
  return none;
}

#endif

IpcTransport::IpcTransport(std::unique_ptr<IpcExporter> exporter, Sources sources, Notify notify)
    : exporter_(std::move(exporter)), sources_(std::move(sources)), notify_(std::move(notify)) {}

absl::StatusOr<PublishStats> IpcTransport::Publish(int64_t version) {
  return TimedPublish(version, sources_, [&](const std::vector<at::Tensor>& sources) -> absl::StatusOr<int64_t> {
    TIDAL_ASSIGN_OR_RETURN(IpcNotice notice, exporter_->Publish(sources, version));
    TIDAL_RETURN_IF_ERROR(notify_(notice));
    return notice.bytes;
  });
}

}  // namespace tidal::weight_sync
