// libFuzzer target: the safetensors reader. The input is a whole file: its header is parsed and
// validated (ParseSafetensorsHeader), then the file is opened through the memory-mapping reader
// and every tensor materialised. Any status is fine; a crash, a sanitizer report or a read past
// the file is a bug (the contract in core/safetensors.h).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto header = tidal::ParseSafetensorsHeader(bytes, size, "fuzz");
  if (!header.ok()) return 0;
  // A memfd is a real file for Open's mmap, without touching the disk.
  static const std::string path = [] {
    const int fd = memfd_create("fuzz.safetensors", 0);
    return "/proc/self/fd/" + std::to_string(fd);
  }();
  const int fd = open(path.c_str(), O_RDWR | O_TRUNC);
  if (fd < 0) return 0;
  size_t off = 0;
  while (off < size) {
    const ssize_t n = write(fd, data + off, size - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  close(fd);
  auto file = tidal::SafetensorsFile::Open(path);
  if (!file.ok()) __builtin_trap();  // the header parsed, so the same bytes must open
  auto all = (*file)->All();
  if (all.ok()) {
    for (const auto& [name, t] : *all) (void)t.sum();
  }
  return 0;
}
