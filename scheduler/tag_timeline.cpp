#include "scheduler/tag_timeline.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/logging.h"

namespace tidal::scheduler {

namespace {
// Names are device names ("cpu:1", "cuda:3") and reasons from a closed set: no escaping needed
// beyond refusing quotes and backslashes.
std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      out += '_';
    } else {
      out += c;
    }
  }
  return out + "\"";
}
}  // namespace

bool KnownMoveReason(const std::string& r) {
  return r == "lend" || r == "recall" || r == "gang" || r == "train_bound" || r == "rollout_bound" ||
         r == "long_tail" || r == "bounds" || r == "plan";
}

std::string TagMoveJson(const TagMoveRecord& m) {
  std::string line = absl::StrFormat("{\"t\":%.3f,\"step\":%d,\"device\":%d,\"name\":%s,\"from\":\"%s\",\"to\":\"%s\","
                                     "\"reason\":%s",
                                     m.t, m.step, m.device, Quoted(m.name), TagName(m.from), TagName(m.to),
                                     Quoted(m.reason));
  if (!m.train_group.empty()) absl::StrAppend(&line, ",\"train_group\":[", absl::StrJoin(m.train_group, ","), "]");
  return line + "}";
}

TagTimeline::~TagTimeline() {
  if (file_ != nullptr) std::fclose(file_);
}

bool TagTimeline::Open(const std::string& path, bool append) {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  if (path.empty()) return true;
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (file_ == nullptr) {
    TIDAL_LOG(WARN) << "tag timeline " << path << ": " << std::strerror(errno) << " (moves are still counted)";
    return false;
  }
  return true;
}

void TagTimeline::Record(const TagMoveRecord& m) {
  ++counts_[{TagName(m.from), TagName(m.to), m.reason}];
  ++total_;
  if (file_ == nullptr) return;
  const std::string line = TagMoveJson(m) + "\n";
  if ((std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) && !warned_) {
    warned_ = true;
    TIDAL_LOG(WARN) << "tag timeline: write failed: " << std::strerror(errno);
  }
}

}  // namespace tidal::scheduler
