// Device time per kernel over a region of a benchmark, from LibTorch's Kineto profiler (CUPTI):
// what `tidal bench rollout --profile` prints to show where a step's time goes.
//
// Contract: Start() on the thread that launches the work, Stop() on the same thread after the
// region's device work has finished (the caller synchronises). Kernels replayed from CUDA graphs
// are counted one by one. The profiler adds its own overhead to the region's wall time, so a
// profiled run's throughput is not a benchmark figure. One profile at a time per process.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace tidal::cli {

void StartKernelProfile();
// Ends the profile: {"device_ms": total, "kernels": [{name, count, total_ms, mean_us}...]} with
// the `top` kernels by total time; writes a Chrome trace to `trace_path` unless it is empty.
nlohmann::json StopKernelProfile(const std::string& trace_path, int top = 25);

}  // namespace tidal::cli
