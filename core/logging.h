// Leveled process logging: one line per record to stderr and, optionally, to a file.
//
// Contract:
// - Call InitLogging() once near the start of main(), before other threads log; it fixes the
//   process tag (role and rank) and the minimum level. Calling it again (tests) replaces both and
//   reopens the file; never call it while other threads are logging.
// - TIDAL_LOG(level) << ... is safe from any thread. Every line reads
//     [HH:MM:SS.mmm L tag file.cpp:line] message
//   with UTC time, L one of D I W E, tag "controller" or "rollout-1" (role, then -rank if rank >= 0).
//   Each record is written with one write() per sink so lines from threads and processes sharing
//   a terminal do not interleave mid-line.
// - A record below the minimum level costs one relaxed atomic load; its stream operands are not
//   evaluated.
// - Floods are cut: a WARN or ERROR line repeated from one call site (equal up to its numbers)
//   is written 10 times per 10 s, then dropped and counted; the next one written carries
//   "[N similar lines suppressed]". TIDAL_LOG_REPEAT=BURST/WINDOW_MS (read by InitLogging)
//   changes the limit. INFO and DEBUG are never dropped.
// - The minimum level comes from LogOptions::level, else from env TIDAL_LOG_LEVEL
//   (debug|info|warn|error), else info.
#pragma once

#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tidal {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

struct LogOptions {
  std::string role = "tidal";  // process role: controller, rollout, train, ...
  int rank = -1;               // appended as role-rank when >= 0
  std::string file;            // appended to when non-empty (e.g. <run_dir>/logs/rollout-1.log)
  std::optional<LogLevel> level;  // unset: TIDAL_LOG_LEVEL, else info
};

// Fails (and leaves logging to stderr only) when the file cannot be opened or TIDAL_LOG_LEVEL is
// not a level name; the error names the file or the variable.
absl::Status InitLogging(const LogOptions& options);

// "debug" | "info" | "warn" | "warning" | "error", case-insensitive.
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);

LogLevel MinLogLevel();
void SetMinLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
// The tag printed in every line, e.g. "rollout-1".
std::string LogTag();

namespace log_internal {

// Accumulates one record; the destructor writes it.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};

// Lets the macro be an expression of type void in both branches of ?:.
struct Voidify {
  void operator&(std::ostream&) {}
};

inline constexpr LogLevel DEBUG = LogLevel::kDebug;
inline constexpr LogLevel INFO = LogLevel::kInfo;
inline constexpr LogLevel WARN = LogLevel::kWarn;
inline constexpr LogLevel ERROR = LogLevel::kError;

}  // namespace log_internal
}  // namespace tidal

// TIDAL_LOG(INFO) << "bound " << endpoint;   levels: DEBUG, INFO, WARN, ERROR
#define TIDAL_LOG(level)                                                    \
  !::tidal::LogEnabled(::tidal::log_internal::level)                        \
      ? (void)0                                                             \
      : ::tidal::log_internal::Voidify() &                                  \
            ::tidal::log_internal::LogMessage(::tidal::log_internal::level, \
                                              __FILE__, __LINE__)           \
                .stream()
