#include "weight_sync/weight_packer.h"

#include <cstring>

#include "core/hash.h"

namespace tidal::weight_sync {

std::string DtypeName(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return std::string(c10::toString(type));
  }
}

absl::StatusOr<at::ScalarType> DtypeFromName(const std::string& name) {
  static const std::pair<const char*, at::ScalarType> kTypes[] = {
      {"float32", at::kFloat}, {"bfloat16", at::kBFloat16}, {"float16", at::kHalf},
      {"float64", at::kDouble}, {"int64", at::kLong},       {"int32", at::kInt},
      {"uint8", at::kByte},     {"bool", at::kBool}};
  for (const auto& [n, t] : kTypes) {
    if (name == n) return t;
  }
  return absl::InvalidArgumentError(absl::StrCat("weight sync: unknown dtype '", name, "'"));
}

namespace {

struct Open {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  uint64_t bytes = 0;
};

}  // namespace

std::vector<PackedBucket> PackWeights(const NamedTensors& weights, int64_t version,
                                      int64_t bucket_bytes) {
  std::vector<Open> plan;
  for (const auto& [name, t] : weights) {
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    uint64_t n = c.numel() * c.element_size();
    if (plan.empty() || (plan.back().bytes > 0 && plan.back().bytes + n > uint64_t(bucket_bytes))) {
      plan.emplace_back();
    }
    plan.back().tensors.emplace_back(name, c);
    plan.back().bytes += n;
  }
  uint64_t total = 0;
  for (const auto& b : plan) total += b.bytes;

  std::vector<PackedBucket> out;
  out.reserve(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    auto buf = std::make_shared<std::vector<uint8_t>>(plan[i].bytes);
    PackedBucket pb;
    pb.header.version = version;
    pb.header.index = static_cast<int32_t>(i);
    pb.header.count = static_cast<int32_t>(plan.size());
    pb.header.nbytes = plan[i].bytes;
    pb.header.total_bytes = total;
    uint64_t off = 0;
    for (const auto& [name, c] : plan[i].tensors) {
      uint64_t n = c.numel() * c.element_size();
      if (n > 0) std::memcpy(buf->data() + off, c.data_ptr(), n);
      pb.header.entries.push_back({name, DtypeName(c.scalar_type()), c.sizes().vec(), off, n});
      off += n;
    }
    pb.header.crc32c = Crc32c(buf->data(), buf->size());
    pb.bytes = Payload(std::shared_ptr<const void>(buf, buf->data()), buf->data(), buf->size());
    out.push_back(std::move(pb));
  }
  return out;
}

}  // namespace tidal::weight_sync
