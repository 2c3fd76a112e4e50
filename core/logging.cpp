#include "core/logging.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tidal {
namespace {

// Per repeated line (call site + text with digits blanked): records in the current window.
struct Repeat {
  std::chrono::steady_clock::time_point window_start;
  int written = 0;
  int64_t suppressed = 0;
};

struct LogState {
  std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};
  std::mutex mu;  // guards tag, file_fd and repeats, and orders writes to the file
  std::string tag = "tidal";
  int file_fd = -1;
  std::unordered_map<std::string, Repeat> repeats;
  int repeat_burst = 10;
  std::chrono::steady_clock::duration repeat_window = std::chrono::seconds(10);
};

// Floods: a retry loop that fails the same way thousands of times a second must not bury the
// log (or fill the disk): WARN and ERROR lines that repeat, up to the numbers in them, are written
// repeat_burst times per repeat_window, then counted; the next one written says how many were
// left out. INFO and DEBUG are periodic by design and never dropped.
constexpr size_t kMaxRepeatKeys = 4096;

std::string RepeatKey(const char* file, int line, const std::string& body) {
  std::string key = absl::StrCat(file, ":", line, ":");
  bool in_digits = false;
  for (char c : body) {
    const bool digit = c >= '0' && c <= '9';
    if (!digit) key.push_back(c);
    else if (!in_digits) key.push_back('#');
    in_digits = digit;
  }
  return key;
}

LogState& State() {
  static LogState* state = [] {
    auto* s = new LogState();  // leaked: logging must work during static destruction
    if (const char* env = std::getenv("TIDAL_LOG_LEVEL"); env != nullptr && *env != '\0') {
      if (auto level = ParseLogLevel(env); level.ok()) s->min_level = static_cast<int>(*level);
    }
    return s;
  }();
  return *state;
}

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return 'D';
    case LogLevel::kInfo: return 'I';
    case LogLevel::kWarn: return 'W';
    case LogLevel::kError: return 'E';
  }
  return '?';
}

// Retries short writes so a record reaches the sink whole.
void WriteAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to report a failing log sink
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name) {
  std::string lower = absl::AsciiStrToLower(std::string(name));
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarn;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("log level '", std::string(name), "': expected one of debug, info, warn, error"));
}

absl::Status InitLogging(const LogOptions& options) {
  LogState& st = State();
  absl::Status status;
  std::optional<LogLevel> level = options.level;
  if (!level) {
    level = LogLevel::kInfo;
    if (const char* env = std::getenv("TIDAL_LOG_LEVEL"); env != nullptr && *env != '\0') {
      auto parsed = ParseLogLevel(env);
      if (parsed.ok()) {
        level = *parsed;
      } else {
        status = absl::InvalidArgumentError(
            absl::StrCat("TIDAL_LOG_LEVEL: ", parsed.status().message()));
      }
    }
  }
  st.min_level.store(static_cast<int>(*level), std::memory_order_relaxed);

  std::lock_guard<std::mutex> lock(st.mu);
  // TIDAL_LOG_REPEAT=BURST/WINDOW_MS overrides the flood limit (tests use a short window).
  st.repeat_burst = 10;
  st.repeat_window = std::chrono::seconds(10);
  st.repeats.clear();
  if (const char* env = std::getenv("TIDAL_LOG_REPEAT"); env != nullptr && *env != '\0') {
    int burst = 0;
    long window_ms = 0;
    if (std::sscanf(env, "%d/%ld", &burst, &window_ms) == 2 && burst > 0 && window_ms > 0) {
      st.repeat_burst = burst;
      st.repeat_window = std::chrono::milliseconds(window_ms);
    } else if (status.ok()) {
      status = absl::InvalidArgumentError(absl::StrCat("TIDAL_LOG_REPEAT: expected BURST/WINDOW_MS, got ", env));
    }
  }
  st.tag = options.rank >= 0 ? absl::StrCat(options.role, "-", options.rank) : options.role;
  if (st.file_fd >= 0) {
    ::close(st.file_fd);
    st.file_fd = -1;
  }
  if (!options.file.empty()) {
    int fd = ::open(options.file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (status.ok()) {
        status = absl::UnavailableError(
            absl::StrCat("log file ", options.file, ": ", std::strerror(errno)));
      }
    } else {
      st.file_fd = fd;
    }
  }
  return status;
}

LogLevel MinLogLevel() {
  return static_cast<LogLevel>(State().min_level.load(std::memory_order_relaxed));
}

void SetMinLogLevel(LogLevel level) {
  State().min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= State().min_level.load(std::memory_order_relaxed);
}

std::string LogTag() {
  LogState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  return st.tag;
}

namespace log_internal {

LogMessage::LogMessage(LogLevel level, const char* file, int line)
    : level_(level), file_(file), line_(line) {}

LogMessage::~LogMessage() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  const char* base = std::strrchr(file_, '/');
  base = base != nullptr ? base + 1 : file_;
  std::string body = stream_.str();
  if (body.empty() || body.back() != '\n') body.push_back('\n');

  LogState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  if (level_ >= LogLevel::kWarn) {
    if (st.repeats.size() >= kMaxRepeatKeys) st.repeats.clear();
    Repeat& r = st.repeats[RepeatKey(file_, line_, body)];
    const auto now_steady = std::chrono::steady_clock::now();
    if (now_steady - r.window_start >= st.repeat_window) {
      r.window_start = now_steady;
      r.written = 0;
    }
    if (r.written >= st.repeat_burst) {
      ++r.suppressed;
      return;
    }
    ++r.written;
    if (r.suppressed > 0) {
      body.insert(body.size() - 1, absl::StrCat(" [", r.suppressed, " similar lines suppressed]"));
      r.suppressed = 0;
    }
  }
  std::string line = absl::StrFormat("[%02d:%02d:%02d.%03d %c %s %s:%d] %s", tm.tm_hour, tm.tm_min,
                                     tm.tm_sec, static_cast<int>(ms % 1000), LevelLetter(level_),
                                     st.tag, base, line_, body);
  WriteAll(STDERR_FILENO, line);
  if (st.file_fd >= 0) WriteAll(st.file_fd, line);
}

}  // namespace log_internal
}  // namespace tidal
