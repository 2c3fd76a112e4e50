#include "tools/cli/kernel_profile.h"

#include <ATen/Context.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

namespace tidal::cli {
namespace {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// CUDA activity only where a device exists (asking for it without one logs a CUPTI error).
std::set<ActivityType> Activities() {
  if (at::hasCUDA()) return {ActivityType::CPU, ActivityType::CUDA};
  return {ActivityType::CPU};
}

}  // namespace

void StartKernelProfile() {
  const ProfilerConfig config(ProfilerState::KINETO);
  prof::prepareProfiler(config, Activities());
  prof::enableProfiler(config, Activities());
}

nlohmann::json StopKernelProfile(const std::string& trace_path, int top) {
  std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();
  struct Sum {
    int64_t count = 0;
    double ns = 0;
  };
  std::map<std::string, Sum> by_name;
  double total_ns = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;  // device activity: kernels, copies
    Sum& s = by_name[e.name()];
    ++s.count;
    s.ns += static_cast<double>(e.durationNs());
    total_ns += static_cast<double>(e.durationNs());
  }
  std::vector<std::pair<std::string, Sum>> rows(by_name.begin(), by_name.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  nlohmann::json kernels = nlohmann::json::array();
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < top; ++i) {
    const auto& [name, s] = rows[i];
    kernels.push_back({{"name", name.substr(0, 160)},
                       {"count", s.count},
                       {"total_ms", s.ns / 1e6},
                       {"mean_us", s.ns / 1e3 / static_cast<double>(s.count)}});
  }
  if (!trace_path.empty()) result->save(trace_path);
  return {{"device_ms", total_ns / 1e6}, {"distinct_kernels", rows.size()}, {"kernels", kernels}};
}

}  // namespace tidal::cli
