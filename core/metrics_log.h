// The run's metrics log: one JSON object per line, appended to a file (JSON Lines).
//
// Contract: Write() is thread-safe and writes each record with a single write() on an O_APPEND
// descriptor, so records from several threads, or several processes sharing the file, never
// interleave within a line. Each record gets "time" (Unix seconds, float) unless it has one.
// Records are not buffered in-process: after Write() returns, the line is in the kernel (call
// Sync() to force it to disk, e.g. at a checkpoint).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tidal {

class MetricsLog {
 public:
  // Creates the file (and missing parent directories) or appends to it.
  static absl::StatusOr<std::unique_ptr<MetricsLog>> Open(const std::string& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // InvalidArgument if `record` is not an object; Unavailable (naming the file) on I/O errors.
  absl::Status Write(nlohmann::json record);
  absl::Status Sync();
  const std::string& path() const { return path_; }

 private:
  MetricsLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  const std::string path_;
  const int fd_;
  std::mutex mu_;
};

}  // namespace tidal
