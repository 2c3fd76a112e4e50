#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

namespace tidal {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; tidal reads it in place");

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble},  {"F32", at::kFloat},  {"F16", at::kHalf},
    {"BF16", at::kBFloat16}, {"I64", at::kLong}, {"I32", at::kInt},
    {"I16", at::kShort},   {"I8", at::kChar},    {"U8", at::kByte},
    {"BOOL", at::kBool},   {"F8_E4M3", at::kFloat8_e4m3fn}, {"F8_E5M2", at::kFloat8_e5m2},
};

absl::Status Invalid(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

// A CPU, contiguous version of `t` and its safetensors dtype name.
struct Prepared {
  std::string name;
  std::string dtype_name;
  at::Tensor data;
  uint64_t begin = 0, end = 0;
};

absl::StatusOr<std::vector<Prepared>> Prepare(const NamedTensors& tensors) {
  std::vector<Prepared> out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor name \"", name, "\" is reserved"));
    }
    if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " is undefined"));
    auto dtype_name = SafetensorsDtypeName(t.scalar_type());
    if (!dtype_name.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": ", dtype_name.status().message()));
    }
    out.push_back({name, *dtype_name, t.detach().to(at::kCPU).contiguous()});
  }
  // Largest itemsize first keeps every tensor aligned to its own itemsize.
  std::stable_sort(out.begin(), out.end(), [](const Prepared& a, const Prepared& b) {
    return a.data.element_size() > b.data.element_size();
  });
  uint64_t offset = 0;
  for (Prepared& p : out) {
    p.begin = offset;
    offset += p.data.nbytes();
    p.end = offset;
  }
  return out;
}

// 8-byte length + JSON header padded with spaces to a multiple of 8.
std::string EncodeHeader(const std::vector<Prepared>& tensors, const SafetensorsMetadata& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  for (const Prepared& p : tensors) {
    h[p.name] = {{"dtype", p.dtype_name},
                 {"shape", p.data.sizes().vec()},
                 {"data_offsets", {p.begin, p.end}}};
  }
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  return out + text;
}

absl::StatusOr<uint64_t> CheckedNumelBytes(const std::vector<int64_t>& shape, size_t itemsize) {
  uint64_t n = itemsize;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) {
      return absl::InvalidArgumentError("shape overflows 64 bits");
    }
  }
  return n;
}

}  // namespace

absl::StatusOr<at::ScalarType> SafetensorsDtype(const std::string& name) {
  for (const DtypeInfo& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  return absl::UnimplementedError(absl::StrCat("safetensors dtype \"", name, "\" is not supported"));
}

absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (dtype == d.type) return std::string(d.name);
  }
  return absl::UnimplementedError(absl::StrCat("dtype ", c10::toString(dtype), " has no safetensors name"));
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view bytes, uint64_t total_bytes,
                                                         const std::string& source) {
  if (total_bytes < 8 || bytes.size() < 8) {
    return Invalid(source, absl::StrCat("truncated: ", total_bytes,
                                        " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxHeaderBytes) {
    return Invalid(source, absl::StrCat("header length ", header_len, " exceeds the 100 MB limit"));
  }
  if (header_len > total_bytes - 8 || header_len > bytes.size() - 8) {
    return Invalid(source, absl::StrCat("truncated: header length ", header_len, " but only ",
                                        total_bytes - 8, " bytes follow"));
  }
  std::string_view text = bytes.substr(8, header_len);
  json h = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object()) {
    return Invalid(source, "header is not a JSON object");
  }
  SafetensorsHeader out;
  out.data_start = 8 + header_len;
  const uint64_t data_bytes = total_bytes - out.data_start;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Invalid(source, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return Invalid(source, absl::StrCat("__metadata__.", m.key(), " is not a string"));
        }
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor ", name);
    if (!v.is_object()) return Invalid(source, where + ": header entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return Invalid(source, where + ": missing string \"dtype\"");
    if (sh == v.end() || !sh->is_array()) return Invalid(source, where + ": missing array \"shape\"");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      return Invalid(source, where + ": \"data_offsets\" must be [begin, end] of non-negative integers");
    }
    SafetensorsEntry e;
    e.name = name;
    e.dtype_name = dt->get<std::string>();
    auto st = SafetensorsDtype(e.dtype_name);
    if (!st.ok()) return Invalid(source, absl::StrCat(where, ": ", st.status().message()));
    e.dtype = *st;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) {
        return Invalid(source, absl::StrCat(where, ": shape ", sh->dump(), " has a non-integer or negative dim"));
      }
      uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(INT64_MAX)) return Invalid(source, where + ": shape dim too large");
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    e.begin = (*off)[0].get<uint64_t>();
    e.end = (*off)[1].get<uint64_t>();
    if (e.begin > e.end) {
      return Invalid(source, absl::StrCat(where, ": data_offsets [", e.begin, ", ", e.end, "] are reversed"));
    }
    if (e.end > data_bytes) {
      return Invalid(source, absl::StrCat(where, ": data_offsets end ", e.end, " lies past the ",
                                          data_bytes, " data bytes in the file (truncated?)"));
    }
    auto nbytes = CheckedNumelBytes(e.shape, c10::elementSize(e.dtype));
    if (!nbytes.ok()) return Invalid(source, absl::StrCat(where, ": ", nbytes.status().message()));
    if (*nbytes != e.end - e.begin) {
      return Invalid(source, absl::StrCat(where, ": dtype ", e.dtype_name, " shape ", sh->dump(),
                                          " needs ", *nbytes, " bytes but data_offsets span ",
                                          e.end - e.begin));
    }
    out.entries.push_back(std::move(e));
  }
  std::sort(out.entries.begin(), out.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  for (size_t i = 1; i < out.entries.size(); ++i) {
    if (out.entries[i].begin < out.entries[i - 1].end) {
      return Invalid(source, absl::StrCat("tensors ", out.entries[i - 1].name, " and ",
                                          out.entries[i].name, " overlap in the data section"));
    }
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Invalid(path, absl::StrCat("truncated: ", size, " bytes, shorter than the 8-byte header length"));
  }
  // Private + writable: copy-on-write, so a caller updating a loaded weight in place never
  // faults and never modifies the file.
  void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  }
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = map;
  file->map_size_ = size;
  file->self_ = file;
  auto header = ParseSafetensorsHeader(std::string_view(static_cast<const char*>(map), size), size, path);
  if (!header.ok()) return header.status();  // the destructor unmaps
  file->header_ = std::move(*header);
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const SafetensorsEntry* SafetensorsFile::Find(const std::string& name) const {
  for (const SafetensorsEntry& e : header_.entries) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

at::Tensor SafetensorsFile::Materialize(const SafetensorsEntry& e) const {
  auto options = at::TensorOptions().dtype(e.dtype);
  if (e.end == e.begin) return at::empty(e.shape, options);
  char* ptr = static_cast<char*>(map_) + header_.data_start + e.begin;
  const size_t itemsize = c10::elementSize(e.dtype);
  if (reinterpret_cast<uintptr_t>(ptr) % itemsize != 0) {
    // Unaligned data (legal in the format, never written by tidal): copy rather than hand
    // vectorised kernels a misaligned pointer.
    at::Tensor t = at::empty(e.shape, options);
    std::memcpy(t.data_ptr(), ptr, e.end - e.begin);
    return t;
  }
  std::shared_ptr<const SafetensorsFile> keep = self_.lock();
  return at::from_blob(ptr, e.shape, [keep](void*) {}, options);
}

absl::StatusOr<at::Tensor> SafetensorsFile::Tensor(const std::string& name) const {
  const SafetensorsEntry* e = Find(name);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat(path_, ": no tensor named ", name));
  return Materialize(*e);
}

absl::StatusOr<NamedTensors> SafetensorsFile::All() const {
  NamedTensors out;
  for (const SafetensorsEntry& e : header_.entries) out.emplace(e.name, Materialize(e));
  return out;
}

absl::StatusOr<NamedTensors> LoadSafetensors(const std::string& path) {
  TIDAL_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  return file->All();
}

absl::Status SaveSafetensors(const std::string& path, const NamedTensors& tensors,
                             const SafetensorsMetadata& metadata) {
  TIDAL_ASSIGN_OR_RETURN(std::vector<Prepared> prepared, Prepare(tensors));
  const std::string header = EncodeHeader(prepared, metadata);
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot create: ", std::strerror(errno)));
  }
  bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
  for (const Prepared& p : prepared) {
    if (!ok) break;
    const size_t n = p.data.nbytes();
    ok = n == 0 || std::fwrite(p.data.data_ptr(), 1, n, f) == n;
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat(path, ": write failed: ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> EncodeSafetensors(const NamedTensors& tensors,
                                              const SafetensorsMetadata& metadata) {
  TIDAL_ASSIGN_OR_RETURN(std::vector<Prepared> prepared, Prepare(tensors));
  std::string out = EncodeHeader(prepared, metadata);
  const size_t data_start = out.size();
  out.resize(data_start + (prepared.empty() ? 0 : prepared.back().end));
  for (const Prepared& p : prepared) {
    if (p.end > p.begin) std::memcpy(out.data() + data_start + p.begin, p.data.data_ptr(), p.end - p.begin);
  }
  return out;
}

absl::StatusOr<NamedTensors> DecodeSafetensors(std::string_view bytes, const std::string& source,
                                               SafetensorsMetadata* metadata) {
  TIDAL_ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensorsHeader(bytes, bytes.size(), source));
  NamedTensors out;
  for (const SafetensorsEntry& e : header.entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    if (e.end > e.begin) std::memcpy(t.data_ptr(), bytes.data() + header.data_start + e.begin, e.end - e.begin);
    out.emplace(e.name, std::move(t));
  }
  if (metadata != nullptr) *metadata = std::move(header.metadata);
  return out;
}

}  // namespace tidal
