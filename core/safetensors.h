// The safetensors file format, implemented here (no packaged C++ reader exists).
//
// Layout: 8-byte little-endian header length N, N bytes of JSON header, then raw data. The header
// maps each tensor name to {"dtype": "F32"|..., "shape": [...], "data_offsets": [begin, end]}
// (offsets relative to the data section) plus an optional "__metadata__" string->string map.
//
// Contract:
// - Every read validates before it touches tensor bytes: the header length against the file
//   size, the JSON, each dtype, shape x itemsize against its byte range, ranges inside the data
//   section and not overlapping. A truncated file or lying header yields an InvalidArgument
//   status naming the file and the tensor; it never crashes.
// - SafetensorsFile memory-maps the file privately (copy-on-write): tensors it hands out share the
//   page cache, keep the mapping alive, and writes to them never reach the file.
// - Writers order tensors by itemsize (largest first) then name, so every tensor's data starts
//   aligned to its itemsize; the header is padded with spaces to a multiple of 8 bytes, as the
//   reference Python writer does.
// - All functions are thread-compatible; a SafetensorsFile is immutable after Open and may be read
//   from several threads.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"  // NamedTensors
#include "core/status.h"

namespace tidal {

using SafetensorsMetadata = std::map<std::string, std::string>;

// One tensor's header entry.
struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;  // as in the file: "F32", "BF16", ...
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data section
};

// Parsed and validated header of a safetensors buffer whose total size is `total_bytes`.
struct SafetensorsHeader {
  uint64_t data_start = 0;                 // 8 + header length
  std::vector<SafetensorsEntry> entries;   // sorted by begin offset
  SafetensorsMetadata metadata;
};
// `source` names the file or buffer in messages.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view bytes_prefix,
                                                         uint64_t total_bytes,
                                                         const std::string& source);

// safetensors dtype name <-> ATen dtype. F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2.
absl::StatusOr<at::ScalarType> SafetensorsDtype(const std::string& name);
absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType dtype);

// A memory-mapped safetensors file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::shared_ptr<const SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return header_.entries; }
  const SafetensorsMetadata& metadata() const { return header_.metadata; }
  const SafetensorsEntry* Find(const std::string& name) const;

  // CPU tensor over the mapped bytes (zero-copy when the data is aligned for its dtype, else a
  // copy). NotFound when the name is absent.
  absl::StatusOr<at::Tensor> Tensor(const std::string& name) const;
  // Every tensor, keyed by name.
  absl::StatusOr<NamedTensors> All() const;

 private:
  SafetensorsFile() = default;
  at::Tensor Materialize(const SafetensorsEntry& e) const;

  std::string path_;
  SafetensorsHeader header_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::weak_ptr<const SafetensorsFile> self_;  // tensors hold a strong ref to keep the map alive
};

// Reads every tensor of a file (views into its mapping).
absl::StatusOr<NamedTensors> LoadSafetensors(const std::string& path);

// Writes tensors (any device; copied to CPU) to `path` atomically (temp file + rename).
absl::Status SaveSafetensors(const std::string& path, const NamedTensors& tensors,
                             const SafetensorsMetadata& metadata = {});

// In-memory encode/decode in the same format (weight-sync buckets, tests). Decode copies the
// tensors out of `bytes`, so the buffer may be freed afterwards.
absl::StatusOr<std::string> EncodeSafetensors(const NamedTensors& tensors,
                                              const SafetensorsMetadata& metadata = {});
absl::StatusOr<NamedTensors> DecodeSafetensors(std::string_view bytes,
                                               const std::string& source = "<buffer>",
                                               SafetensorsMetadata* metadata = nullptr);

}  // namespace tidal
