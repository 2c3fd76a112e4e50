#include "envs/env_worker_protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace tidal::envs {
namespace {

constexpr uint32_t kMaxFields = 16;
constexpr uint32_t kMaxFieldBytes = 256u << 20;  // a sanity bound, far above any real reply

absl::Status WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    // MSG_NOSIGNAL: a dead peer must give EPIPE, not kill this process with SIGPIPE.
    ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("write to env-worker socket: ", strerror(errno)));
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, char* data, size_t n,
                     std::chrono::steady_clock::time_point deadline) {
  while (n > 0) {
    if (deadline != std::chrono::steady_clock::time_point::max()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return absl::DeadlineExceededError("no reply before the deadline");
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count() + 1, 1 << 30)));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return absl::UnavailableError(absl::StrCat("poll: ", strerror(errno)));
      if (r == 0) continue;  // re-check the deadline
    }
    ssize_t got = ::read(fd, data, n);
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("read: ", strerror(errno)));
    }
    if (got == 0) return absl::UnavailableError("connection closed");
    data += got;
    n -= static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteMessage(int fd, const std::vector<std::string>& fields) {
  std::string buf;
  auto put32 = [&](uint32_t v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put32(static_cast<uint32_t>(fields.size()));
  for (const auto& f : fields) {
    put32(static_cast<uint32_t>(f.size()));
    buf += f;
  }
  return WriteAll(fd, buf.data(), buf.size());
}

absl::StatusOr<std::vector<std::string>> ReadMessage(
    int fd, std::chrono::steady_clock::time_point deadline) {
  uint32_t count = 0;
  TIDAL_RETURN_IF_ERROR(ReadAll(fd, reinterpret_cast<char*>(&count), sizeof count, deadline));
  if (count > kMaxFields) {
    return absl::UnavailableError(absl::StrCat("malformed frame: ", count, " fields"));
  }
  std::vector<std::string> fields(count);
  for (auto& f : fields) {
    uint32_t len = 0;
    TIDAL_RETURN_IF_ERROR(ReadAll(fd, reinterpret_cast<char*>(&len), sizeof len, deadline));
    if (len > kMaxFieldBytes) {
      return absl::UnavailableError(absl::StrCat("malformed frame: field of ", len, " bytes"));
    }
    f.resize(len);
    TIDAL_RETURN_IF_ERROR(ReadAll(fd, f.data(), len, deadline));
  }
  return fields;
}

}  // namespace tidal::envs
