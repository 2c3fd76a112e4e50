#include "core/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "core/clock.h"

namespace tidal {
namespace {

// mkdir -p. POSIX rather than std::filesystem: the torch wheel's libtorch.so exports its own
// std::filesystem symbols, and calls can bind to those (remove_all crashes there).
absl::Status MakeParentDirs(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    std::string dir = path.substr(0, pos);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::UnavailableError(absl::StrCat("metrics log ", path, ": cannot create directory ",
                                                 dir, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(const std::string& path) {
  if (absl::Status s = MakeParentDirs(path); !s.ok()) return s;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("metrics log ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<MetricsLog>(new MetricsLog(path, fd));
}

MetricsLog::~MetricsLog() { ::close(fd_); }

absl::Status MetricsLog::Write(nlohmann::json record) {
  if (!record.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics log ", path_, ": a record must be a JSON object, got ",
                     record.type_name()));
  }
  if (!record.contains("time")) {
    record["time"] = WallSeconds();
  }
  // replace: a stray invalid UTF-8 byte in a string (e.g. a sampled token) must not throw.
  std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(mu_);
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("metrics log ", path_, ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status MetricsLog::Sync() {
  std::lock_guard<std::mutex> lock(mu_);
  if (::fsync(fd_) != 0) {
    return absl::UnavailableError(absl::StrCat("metrics log ", path_, ": fsync: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace tidal
