#include "core/finite_check.h"

#include "absl/strings/str_cat.h"

namespace tidal {

absl::Status CheckAllFinite(const NamedTensors& weights, const std::string& what) {
  for (const auto& [name, t] : weights) {
    if (!t.defined() || !at::isFloatingType(t.scalar_type())) continue;
    const int64_t bad = at::logical_not(at::isfinite(t)).sum().item<int64_t>();
    if (bad > 0) {
      return absl::DataLossError(absl::StrCat(what, ": tensor ", name, " holds ", bad, " of ", t.numel(),
                                              " values that are NaN or infinite; refusing to publish or export it"));
    }
  }
  return absl::OkStatus();
}

}  // namespace tidal
