// What the CUDA runtime says about this process's devices: how many there are, and the caching
// allocator's memory counters (current, peak) per device; plus the two memory actions a colocated
// worker takes between phases (return cached blocks to the device, restart the peak counter).
//
// Contract:
// - Torch- and CUDA-free header; every function is callable in a build without CUDA, where
//   CudaDeviceCount() is 0 and the rest are no-ops returning zeros.
// - Counters are the LibTorch caching allocator's (memory the process allocated through LibTorch;
//   NCCL's and the CUDA context's own memory is not in them). `device` is the process's index (after
//   CUDA_VISIBLE_DEVICES).
// - Thread-safe (the allocator locks internally); cheap enough to call once per phase switch.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace tidal {

// Devices this process sees; 0 when the build has no CUDA or the driver finds none.
int CudaDeviceCount();

// Checks that `needed` CUDA devices (indices 0..needed-1 after CUDA_VISIBLE_DEVICES) exist, with
// a message naming what was asked for (`what`, e.g. "pool.devices cuda:0-3") and what was found.
absl::Status CheckCudaDevices(int highest_index, const std::string& what);

struct DeviceMemory {
  int64_t allocated = 0;       // bytes in live tensors
  int64_t reserved = 0;        // bytes the allocator holds from the device (live + cached)
  int64_t peak_allocated = 0;  // since the last ResetPeakDeviceMemory
  int64_t peak_reserved = 0;
  int64_t device_free = 0;     // cudaMemGetInfo: free bytes on the device (all processes)
  int64_t device_total = 0;
};

DeviceMemory ReadDeviceMemory(int device);
void ResetPeakDeviceMemory(int device);
// Returns the allocator's cached, unused blocks to the device (so a colocated engine can take them).
void EmptyDeviceCache();
// Waits for all work queued on `device`.
void SynchronizeDevice(int device);

inline double GiB(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

}  // namespace tidal
