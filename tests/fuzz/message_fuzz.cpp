// libFuzzer target: the wire decoder of the control and data planes. The input is split into
// frames (a 2-byte little-endian length before each), decoded with DecodeFrames, and, when it
// decodes, converted to the message types a controller accepts from a peer. Any status is fine;
// a crash, a sanitizer report or an escaping exception is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<tidal::Payload> frames;
  size_t i = 0;
  while (i + 2 <= size && frames.size() < 64) {
    size_t n = data[i] | (static_cast<size_t>(data[i + 1]) << 8);
    i += 2;
    if (n > size - i) n = size - i;
    frames.push_back(tidal::Payload::Copy(data + i, n));
    i += n;
  }
  absl::StatusOr<tidal::Envelope> env = tidal::DecodeFrames(std::move(frames));
  if (!env.ok()) return 0;
  (void)env->As<tidal::Register>();
  (void)env->As<tidal::Heartbeat>();
  (void)env->As<tidal::Error>();
  (void)env->As<tidal::Ack>();
  return 0;
}
