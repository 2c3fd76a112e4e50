#include "core/messaging_tensor.h"

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tidal {
namespace {

struct DtypeEntry {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeEntry kDtypes[] = {
    {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf},
    {"bfloat16", at::kBFloat16}, {"int64", at::kLong}, {"int32", at::kInt},
    {"int16", at::kShort}, {"int8", at::kChar}, {"uint8", at::kByte}, {"bool", at::kBool},
};

}  // namespace

std::string DtypeName(at::ScalarType t) {
  for (const auto& d : kDtypes) {
    if (d.type == t) return d.name;
  }
  TORCH_CHECK(false, "DtypeName: dtype ", t, " has no wire name");
}

absl::StatusOr<at::ScalarType> DtypeFromName(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  std::vector<std::string> known;
  for (const auto& d : kDtypes) known.push_back(d.name);
  return absl::InvalidArgumentError(
      absl::StrCat("dtype '", name, "' is not one of ", absl::StrJoin(known, ", ")));
}

TensorSpec AddTensorFrame(std::vector<Payload>& frames, std::string name, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), "AddTensorFrame: tensor '", name, "' is on ", t.device(),
              "; messages carry CPU tensors");
  at::Tensor c = t.contiguous();
  TensorSpec spec;
  spec.name = std::move(name);
  spec.dtype = DtypeName(c.scalar_type());
  spec.shape.assign(c.sizes().begin(), c.sizes().end());
  spec.frame = static_cast<uint32_t>(frames.size());
  // The payload owns a reference to the tensor, so its storage outlives the send.
  auto keep = std::make_shared<at::Tensor>(c);
  const void* data = keep->data_ptr();
  frames.emplace_back(std::shared_ptr<const void>(keep, data), data, keep->nbytes());
  return spec;
}

absl::StatusOr<at::Tensor> TensorFromFrame(const Envelope& env, const TensorSpec& spec) {
  auto where = [&] {
    return absl::StrCat("tensor '", spec.name, "' in ", env.type(), " from '", env.peer, "'");
  };
  if (spec.frame >= env.frames.size()) {
    return absl::InvalidArgumentError(absl::StrCat(where(), ": frame ", spec.frame,
                                                   " does not exist (message has ",
                                                   env.frames.size(), ")"));
  }
  auto dtype = DtypeFromName(spec.dtype);
  if (!dtype.ok()) return absl::InvalidArgumentError(absl::StrCat(where(), ": ", dtype.status().message()));
  int64_t numel = 1;
  for (int64_t d : spec.shape) {
    if (d < 0 || (d > 0 && numel > INT64_MAX / d)) {
      return absl::InvalidArgumentError(absl::StrCat(where(), ": bad shape [",
                                                     absl::StrJoin(spec.shape, ", "), "]"));
    }
    numel *= d;
  }
  const size_t item = at::elementSize(*dtype);
  const Payload& frame = env.frames[spec.frame];
  if (static_cast<uint64_t>(numel) > frame.size() / item || numel * item != frame.size()) {
    return absl::InvalidArgumentError(absl::StrCat(where(), ": ", spec.dtype, " [",
                                                   absl::StrJoin(spec.shape, ", "), "] needs ",
                                                   static_cast<uint64_t>(numel) * item,
                                                   " bytes, frame has ", frame.size()));
  }
  auto options = at::TensorOptions().dtype(*dtype);
  if (reinterpret_cast<uintptr_t>(frame.data()) % item != 0) {
    // Tiny frames live inside ZeroMQ's message struct and may be misaligned: copy those.
    at::Tensor out = at::empty(spec.shape, options);
    if (frame.size() > 0) std::memcpy(out.data_ptr(), frame.data(), frame.size());
    return out;
  }
  Payload keep = frame;  // the tensor holds the frame alive
  return at::from_blob(const_cast<std::byte*>(frame.data()), spec.shape,
                       [keep](void*) mutable { keep = Payload(); }, options);
}

}  // namespace tidal
