// Device memory helpers on a real GPU. Each ctest entry is its own process, so this runs before
// anything in the process has made a CUDA tensor: the state a rollout-only worker is in when it
// finishes its setup (its engine is built when the first policy version arrives). LibTorch's
// allocator refused stats then ("Invalid device argument"), which killed every rollout-only
// worker of a disaggregated CUDA pool at start.
#include "core/cuda_devices.h"

#include <gtest/gtest.h>

namespace tidal {
namespace {

TEST(CudaDevicesGpu, MemoryStatsBeforeAnyCudaTensor) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device visible";
  ResetPeakDeviceMemory(0);
  const DeviceMemory m = ReadDeviceMemory(0);
  EXPECT_EQ(m.allocated, 0);
  EXPECT_GT(m.device_total, 0);
  EXPECT_GT(m.device_free, 0);
  EmptyDeviceCache();
}

}  // namespace
}  // namespace tidal
