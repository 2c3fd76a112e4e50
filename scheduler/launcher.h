// Launchers start, watch and stop the worker processes of a run (`tidal worker`, one per device
// slot). Two kinds share one interface, picked by the recipe's `launch` (scheduler/slurm.h for the
// Slurm specifics, docs/scale-out.md for the whole picture):
//   LocalLauncher  fork/execs the worker on this machine (`launch: local`)
//   SlurmLauncher  fork/execs `srun` inside the current Slurm allocation, which starts the worker
//                  as a one-task job step on an allocated node (`launch: slurm`)
// Both hold one local child process per device (the worker, or the srun that owns its step), so
// reaping, killing and stopping are the same code (ProcessLauncher); a step that ends for any
// reason (the worker exited, the step was cancelled, its node failed) ends its srun, which the
// controller reaps like any dead worker: requeue, restart if allowed.
//
// Contract:
// - Owned by the controller's event-loop thread; not thread-safe.
// - Children get PR_SET_PDEATHSIG=SIGKILL (a controller that dies takes its local children with
//   it; a remote worker whose srun vanished exits when the controller's heartbeats stop) and their
//   own process group; stdout/stderr of device N go to <log_dir>/worker-N.log (appended, so a
//   restarted worker's log follows the dead one's).
// - Spawn(device, slot, token): the worker gets the registration token (scheduler/worker_auth.h)
//   in its environment (TIDAL_WORKER_TOKEN; never on a command line, which other users can read)
//   and the credentials file path (TIDAL_CREDENTIALS) when the run has one.
// - CPU slots get OMP_NUM_THREADS=1 (one core per slot); local CUDA slots get
//   CUDA_VISIBLE_DEVICES=<index>, Slurm ones get theirs from Slurm (--gpus-per-task=1).
// - Reap() never blocks; Stop() sends SIGTERM, waits up to `grace`, then SIGKILLs what is left.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "core/status.h"
#include "scheduler/device_pool.h"

namespace tidal::scheduler {

struct LaunchOptions {
  std::string binary;       // path of the tidal executable (default: /proc/self/exe)
  std::string controller;   // the endpoint workers dial
  std::string log_dir;
  std::string credentials;  // the workers' credentials file ("" = none: loopback without CURVE)
  std::vector<std::string> extra_args;  // appended to every worker's command line
};

struct ExitedWorker {
  int device = -1;
  pid_t pid = -1;
  int status = 0;  // waitpid status
  std::string Describe() const;  // "exited with code 3", "killed by signal 9"
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual std::string_view kind() const = 0;  // "local", "slurm"
  // Starts device `device`'s worker; returns the local child's pid.
  virtual absl::StatusOr<pid_t> Spawn(int device, const DeviceSlot& slot, const std::string& token) = 0;
  virtual std::vector<ExitedWorker> Reap() = 0;
  virtual pid_t Pid(int device) const = 0;  // the local child; -1 when not running
  // Signals device `device`'s worker (SIGKILL: ends it now, wherever it runs).
  virtual void Kill(int device, int signal) = 0;
  virtual void Stop(absl::Duration grace) = 0;
};

// The fork/exec/reap machinery both launchers share; subclasses say what to exec.
class ProcessLauncher : public Launcher {
 public:
  explicit ProcessLauncher(LaunchOptions options);
  ~ProcessLauncher() override;

  absl::StatusOr<pid_t> Spawn(int device, const DeviceSlot& slot, const std::string& token) override;
  std::vector<ExitedWorker> Reap() override;
  pid_t Pid(int device) const override;
  void Kill(int device, int signal) override;
  void Stop(absl::Duration grace) override;

 protected:
  struct Command {
    std::vector<std::string> argv;                           // argv[0] is the program (PATH searched)
    std::vector<std::pair<std::string, std::string>> env;    // set in the child before exec
  };
  // The worker's own command line: `tidal worker --controller ... --device ... --rank N ...`.
  std::vector<std::string> WorkerArgs(int device, const DeviceSlot& slot) const;
  virtual Command MakeCommand(int device, const DeviceSlot& slot) const = 0;

  LaunchOptions options_;
  std::vector<pid_t> pids_;  // by device
};

class LocalLauncher : public ProcessLauncher {
 public:
  using ProcessLauncher::ProcessLauncher;
  std::string_view kind() const override { return "local"; }

 protected:
  Command MakeCommand(int device, const DeviceSlot& slot) const override;
};

// Absolute path of the running executable.
std::string SelfExecutable();

}  // namespace tidal::scheduler
