// Clocks: the one home for "how long did this take" (monotonic) and "what time is it" (wall).
//
// Monotonic readings (std::chrono::steady_clock) time durations, deadlines and liveness: an NTP
// step or a suspended VM cannot make them run backwards, so nothing is timed with the wall clock.
// Wall readings (system_clock) only stamp what is written out for people and other programs
// (metrics.jsonl, TensorBoard events, message headers) and never time anything.
//
// Contract: header-only (envs/, which links none of tidal_core, may include it), thread-safe,
// no allocation, no state.
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>

namespace tidal {

using MonoClock = std::chrono::steady_clock;
using MonoTime = MonoClock::time_point;

inline MonoTime MonoNow() { return MonoClock::now(); }

// Seconds from `from` to `to` (negative when `to` is earlier).
inline double SecondsBetween(MonoTime from, MonoTime to) {
  return std::chrono::duration<double>(to - from).count();
}
inline double SecondsSince(MonoTime start) { return SecondsBetween(start, MonoClock::now()); }

// Monotonic milliseconds since an arbitrary epoch: only differences mean anything.
inline double MonoMillis() {
  return std::chrono::duration<double, std::milli>(MonoClock::now().time_since_epoch()).count();
}

// Wall time since the Unix epoch.
inline double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
inline int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// CPU seconds this process has used, all threads (benchmarks report it next to wall time).
inline double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace tidal
