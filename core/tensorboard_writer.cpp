#include "core/tensorboard_writer.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/hash.h"

namespace tidal {
namespace {

// ---- protobuf wire format (only what Event needs)
void Varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void Key(std::string* out, int field, int wire_type) { Varint(out, (static_cast<uint64_t>(field) << 3) | wire_type); }
template <class T>
void Fixed(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // x86-64 and aarch64 are little endian, as the format is
  out->append(b, sizeof(T));
}
void Bytes(std::string* out, int field, std::string_view s) {
  Key(out, field, 2);
  Varint(out, s.size());
  out->append(s);
}

std::string EventHeader(double wall_time, int64_t step) {
  std::string e;
  Key(&e, 1, 1);  // wall_time: double
  Fixed(&e, wall_time < 0 ? WallSeconds() : wall_time);
  Key(&e, 2, 0);  // step: int64
  Varint(&e, static_cast<uint64_t>(step));
  return e;
}

}  // namespace

uint32_t MaskedCrc32c(std::string_view data) {
  uint32_t c = Crc32c(data.data(), data.size());
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("tensorboard: cannot create '", dir, "': ", ec.message()));
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  std::string path = absl::StrCat(dir, "/events.out.tfevents.", static_cast<int64_t>(WallSeconds()), ".", host, ".",
                                  getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return absl::UnavailableError(absl::StrCat("tensorboard: cannot open '", path, "': ", std::strerror(errno)));
  std::unique_ptr<TensorBoardWriter> w(new TensorBoardWriter(path, f));
  std::string e = EventHeader(-1, 0);
  Bytes(&e, 3, "brain.Event:2");  // file_version
  std::lock_guard<std::mutex> lock(w->mu_);
  absl::Status s = w->WriteRecord(e);
  if (!s.ok()) return s;
  return w;
}

TensorBoardWriter::~TensorBoardWriter() { std::fclose(file_); }

absl::Status TensorBoardWriter::WriteRecord(const std::string& data) {
  std::string rec;
  Fixed(&rec, static_cast<uint64_t>(data.size()));
  Fixed(&rec, MaskedCrc32c(rec));
  rec += data;
  Fixed(&rec, MaskedCrc32c(data));
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size() || std::fflush(file_) != 0) {
    return absl::UnavailableError(absl::StrCat("tensorboard: write to '", path_, "' failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status TensorBoardWriter::AddScalar(std::string_view tag, int64_t step, double value, double wall_time) {
  return AddScalars({{std::string(tag), value}}, step, wall_time);
}

absl::Status TensorBoardWriter::AddScalars(const std::vector<std::pair<std::string, double>>& values,
                                           int64_t step, double wall_time) {
  if (values.empty()) return absl::OkStatus();
  std::string summary;
  for (const auto& [tag, value] : values) {
    std::string v;
    Bytes(&v, 1, tag);
    Key(&v, 2, 5);  // simple_value: float
    Fixed(&v, static_cast<float>(value));
    Bytes(&summary, 1, v);
  }
  std::string e = EventHeader(wall_time, step);
  Bytes(&e, 5, summary);
  std::lock_guard<std::mutex> lock(mu_);
  return WriteRecord(e);
}

}  // namespace tidal
