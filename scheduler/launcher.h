// Local launcher: starts one worker process per device slot with fork/exec of the `tidal` binary
// itself (`tidal worker --controller ADDR --device cpu:0 --rank N`), reaps them, and stops them.
//
// Contract:
// - Owned by the controller's event-loop thread; not thread-safe.
// - Children get PR_SET_PDEATHSIG=SIGKILL, so a controller that dies (even kill -9) takes its
//   workers with it; stdout/stderr of worker N go to <log_dir>/worker-N.log (appended, so a
//   restarted worker's log follows the dead one's).
// - CPU slots get OMP_NUM_THREADS=1 (one core per slot); CUDA slots get CUDA_VISIBLE_DEVICES.
// - Every Spawn draws a fresh one-time token (128 random bits) and hands it to that worker in
//   TIDAL_WORKER_TOKEN (the environment: other users cannot read it in /proc). The controller
//   admits a Register for device N only with N's current token, once (ConsumeToken); a process
//   that was not launched for this run cannot claim a rank, live or not.
// - Reap() never blocks; Stop() sends SIGTERM, waits up to `grace`, then SIGKILLs what is left.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "core/status.h"
#include "scheduler/device_pool.h"

namespace tidal::scheduler {

struct LaunchOptions {
  std::string binary;      // path of the tidal executable (default: /proc/self/exe)
  std::string controller;  // the controller's ROUTER endpoint
  std::string log_dir;
  std::vector<std::string> extra_args;  // appended to every worker's command line
};

struct ExitedWorker {
  int device = -1;
  pid_t pid = -1;
  int status = 0;  // waitpid status
  std::string Describe() const;  // "exited with code 3", "killed by signal 9"
};

class LocalLauncher {
 public:
  explicit LocalLauncher(LaunchOptions options);
  ~LocalLauncher();

  absl::StatusOr<pid_t> Spawn(int device, const DeviceSlot& slot);
  std::vector<ExitedWorker> Reap();
  pid_t Pid(int device) const;  // -1 when not running
  // True, once, for the token of the worker last spawned on `device` (constant-time compare);
  // false for a wrong, reused or absent token.
  bool ConsumeToken(int device, std::string_view token);
  void Kill(int device, int signal);
  void Stop(absl::Duration grace);

 private:
  LaunchOptions options_;
  std::vector<pid_t> pids_;  // by device
  std::vector<std::string> tokens_;  // by device; "" once consumed
};

inline constexpr char kWorkerTokenEnv[] = "TIDAL_WORKER_TOKEN";

// Absolute path of the running executable.
std::string SelfExecutable();

}  // namespace tidal::scheduler
