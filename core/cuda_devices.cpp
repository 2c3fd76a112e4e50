#include "core/cuda_devices.h"

#include "absl/strings/str_cat.h"

#ifdef TIDAL_WITH_CUDA
#include <ATen/Context.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime.h>
#endif

namespace tidal {

#ifdef TIDAL_WITH_CUDA

int CudaDeviceCount() {
  int n = 0;
  // No driver or no device are both "none here"; the error is cleared so it does not linger as
  // the thread's last CUDA error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

namespace {
// The caching allocator sizes its per-device tables when LibTorch first initialises CUDA (the
// first CUDA tensor). A rollout-only worker builds its engine only when the first policy version
// arrives, so its setup would ask for stats before that and LibTorch refuses ("Invalid device
// argument"): initialise first, once (lazyInitDevice is idempotent and thread-safe).
bool ValidAllocatorDevice(int device) {
  if (device < 0 || device >= CudaDeviceCount()) return false;
  at::globalContext().lazyInitDevice(at::kCUDA);
  return true;
}
}  // namespace

DeviceMemory ReadDeviceMemory(int device) {
  DeviceMemory m;
  if (!ValidAllocatorDevice(device)) return m;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  m.allocated = stats.allocated_bytes[all].current;
  m.peak_allocated = stats.allocated_bytes[all].peak;
  m.reserved = stats.reserved_bytes[all].current;
  m.peak_reserved = stats.reserved_bytes[all].peak;
  int prev = 0;
  if (cudaGetDevice(&prev) == cudaSuccess && cudaSetDevice(device) == cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      m.device_free = static_cast<int64_t>(free_b);
      m.device_total = static_cast<int64_t>(total_b);
    }
    (void)cudaSetDevice(prev);
  }
  (void)cudaGetLastError();
  return m;
}

void ResetPeakDeviceMemory(int device) {
  if (!ValidAllocatorDevice(device)) return;
  c10::cuda::CUDACachingAllocator::resetPeakStats(device);
}

void EmptyDeviceCache() {
  if (!ValidAllocatorDevice(0)) return;
  c10::cuda::CUDACachingAllocator::emptyCache();
}

void SynchronizeDevice(int device) {
  if (device < 0 || device >= CudaDeviceCount()) return;
  int prev = 0;
  if (cudaGetDevice(&prev) != cudaSuccess) return;
  if (cudaSetDevice(device) == cudaSuccess) (void)cudaDeviceSynchronize();
  (void)cudaSetDevice(prev);
}

#else  // !TIDAL_WITH_CUDA

int CudaDeviceCount() { return 0; }
DeviceMemory ReadDeviceMemory(int) { return {}; }
void ResetPeakDeviceMemory(int) {}
void EmptyDeviceCache() {}
void SynchronizeDevice(int) {}

#endif

absl::Status CheckCudaDevices(int highest_index, const std::string& what) {
  const int n = CudaDeviceCount();
  if (highest_index < n) return absl::OkStatus();
#ifdef TIDAL_WITH_CUDA
  const std::string found = n == 0 ? "no CUDA device is visible (driver missing, or CUDA_VISIBLE_DEVICES empty?)"
                                   : absl::StrCat("only ", n, " CUDA device", n == 1 ? "" : "s", " (cuda:0",
                                                  n > 1 ? absl::StrCat("-", n - 1) : "", ") ",
                                                  n == 1 ? "is" : "are", " visible");
#else
  const std::string found = "this build has no CUDA support (configure with TIDAL_CUDA=ON on a machine with nvcc)";
#endif
  return absl::FailedPreconditionError(
      absl::StrCat(what, " asks for cuda:", highest_index, ", but ", found,
                   "; use a cpu:N pool or fewer CUDA devices"));
}

}  // namespace tidal
