// TensorBoard event files: scalars written in TensorFlow's tfevents record format, so
// `tensorboard --logdir <run_dir>/tensorboard` (and anything that reads event files) shows a run.
//
// Format (written here, no TensorFlow or protobuf library): each record is
//   uint64 length (little endian) | uint32 masked CRC-32C of the length bytes | data |
//   uint32 masked CRC-32C of data
// and data is a serialized tensorflow.Event protobuf, encoded by hand: wall_time (1, double),
// step (2, int64), file_version (3, string; the first record: "brain.Event:2") or summary
// (5, Summary{ value (1): Value{ tag (1, string), simple_value (2, float) } }).
//
// Contract: Open() creates the directory and a new events.out.tfevents.<time>.<host>.<pid> file
// and writes the version record. AddScalar()/AddScalars() are thread-safe; each call writes its
// records and flushes them to the kernel, so a reader sees a step as soon as the call returns.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tidal {

class TensorBoardWriter {
 public:
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> Open(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // `wall_time`: Unix seconds; < 0 means now. Non-finite values are written as they are
  // (TensorBoard shows NaN/Inf).
  absl::Status AddScalar(std::string_view tag, int64_t step, double value, double wall_time = -1);
  // One event holding several scalars of the same step.
  absl::Status AddScalars(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                          double wall_time = -1);
  const std::string& path() const { return path_; }

 private:
  TensorBoardWriter(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  absl::Status WriteRecord(const std::string& data);

  const std::string path_;
  std::FILE* const file_;
  std::mutex mu_;
};

// TensorFlow's masked CRC-32C of `data` (core/hash.h computes the CRC); exposed for tests.
uint32_t MaskedCrc32c(std::string_view data);

}  // namespace tidal
