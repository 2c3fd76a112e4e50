#include "weight_sync/inprocess_transport.h"

#include "absl/strings/str_cat.h"

namespace tidal::weight_sync {

InProcessTransport::InProcessTransport(at::ScalarType engine_dtype, at::DeviceType device_type, Gather gather,
                                       Install install)
    : dtype_(engine_dtype), device_type_(device_type), gather_(std::move(gather)), install_(std::move(install)) {}

absl::StatusOr<PublishStats> InProcessTransport::Publish(int64_t version) {
  return TimedPublish(version, [&] { return gather_(dtype_); }, [&](const NamedTensors& weights) -> absl::StatusOr<int64_t> {
    if (weights.empty()) return absl::InternalError(absl::StrCat("in-process weights v", version, ": nothing gathered"));
    int64_t bytes = 0;
    std::vector<at::Tensor> tensors;
    for (const auto& [name, t] : weights) {
      if (!t.defined() || t.device().type() != device_type_ || t.scalar_type() != dtype_) {
        return absl::InternalError(absl::StrCat(
            "in-process weights v", version, ": '", name, "' is ",
            t.defined() ? absl::StrCat(c10::toString(t.scalar_type()), " on ", t.device().str()) : "undefined",
            ", the engine takes ", c10::toString(dtype_), " on ", c10::DeviceTypeName(device_type_, true),
            " (a host hop or a cast would happen in the engine)"));
      }
      bytes += t.numel() * static_cast<int64_t>(t.element_size());
      tensors.push_back(t);
    }
    // A norm is non-finite iff its tensor holds a NaN/Inf (or an element past ~1e19, which would
    // be a diverged policy as well). _foreach_norm fuses the per-tensor reductions; one host sync.
    const std::vector<at::Tensor> norms = at::_foreach_norm(tensors, 2, at::kFloat);
    if (!at::isfinite(at::stack(norms)).all().item<bool>()) {
      for (const auto& [name, t] : weights) {
        if (!at::isfinite(t).all().item<bool>()) {
          return absl::DataLossError(absl::StrCat("in-process weights v", version, ": '", name,
                                                  "' has non-finite values; the engine keeps its version"));
        }
      }
    }
    TIDAL_RETURN_IF_ERROR(install_(weights, version));
    return bytes;
  });
}

}  // namespace tidal::weight_sync
