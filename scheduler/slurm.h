// Slurm: the launcher that runs workers as job steps (`launch: slurm`), the sbatch script that
// puts the controller into an allocation when `tidal run` starts outside one, and the external
// launcher used when someone else (Kubernetes) starts the workers.
//
// Inside an allocation (SLURM_JOB_ID set) the controller runs on the batch node and starts each
// worker with its own srun: one task, `slurm.cpus_per_worker` CPUs, and for CUDA slots one GPU
// (--gpus-per-task=1, so Slurm sets CUDA_VISIBLE_DEVICES), on whichever allocated node has room.
// CPU train ranks must share one node (their communicator is POSIX shared memory), so when there
// is more than one they are pinned to the controller's node (--nodelist=$SLURMD_NODENAME); CUDA
// train ranks use NCCL, bootstrapped by an id the controller hands out in WorkerSetup, and go
// anywhere, as do rollout workers. A step that ends
// — the worker exited, `scancel` of the step, a failed node — ends its srun, which the controller
// reaps like a dead worker (requeue, restart if allowed); Kill(SIGKILL) makes srun end the step
// (srun --quit-on-interrupt + SIGINT), so a hung worker on another node is really stopped.
//
// Contract: as Launcher (scheduler/launcher.h). The run directory must be on a filesystem the
// nodes share (workers read <run_dir>/recipe.yaml and the credentials, and the train ranks write
// checkpoints there).
#pragma once

#include <string>
#include <vector>

#include "core/recipe.h"
#include "scheduler/launcher.h"

namespace tidal::scheduler {

struct SlurmOptions {
  std::string srun = "srun";
  int64_t cpus_per_worker = 1;
  std::vector<std::string> srun_args;  // extra, before the worker's command
  std::vector<int> pinned_devices;     // devices pinned to `pin_node` (the train ranks)
  std::string pin_node;                // "" = no pinning
};

class SlurmLauncher : public ProcessLauncher {
 public:
  SlurmLauncher(LaunchOptions options, SlurmOptions slurm);
  std::string_view kind() const override { return "slurm"; }
  void Kill(int device, int signal) override;

 protected:
  Command MakeCommand(int device, const DeviceSlot& slot) const override;

 private:
  SlurmOptions slurm_;
};

// Workers started by someone else (`launch: external`): Spawn only records that the device is
// expected; the worker dials in by itself (derived tokens, scheduler/worker_auth.h). Kill marks
// the device dead so the next Reap() reports it, which is how a worker that stopped answering
// heartbeats has its work requeued; the orchestrator restarts the process.
class ExternalLauncher : public Launcher {
 public:
  std::string_view kind() const override { return "external"; }
  absl::StatusOr<pid_t> Spawn(int device, const DeviceSlot& slot, const std::string& token) override;
  std::vector<ExitedWorker> Reap() override;
  pid_t Pid(int device) const override;
  void Kill(int device, int signal) override;
  void Stop(absl::Duration grace) override;

 private:
  std::vector<int> state_;  // by device: 0 none, 1 expected, 2 killed (reported by Reap)
};

// Whether this process runs inside a Slurm allocation.
bool InSlurmAllocation();

// Splits "a b  c" at whitespace.
std::vector<std::string> SplitArgs(const std::string& s);

// Outside an allocation: writes <run_dir>/slurm/recipe.yaml (the resolved recipe) and
// <run_dir>/slurm/tidal.sbatch, which runs `tidal run` on that recipe inside the allocation it
// asks for (nodes, one task per worker plus one for the controller, GPUs for CUDA pools), and
// returns the script's path.
absl::StatusOr<std::string> WriteSbatchScript(const Recipe& recipe, const std::string& tidal_binary);
// `sbatch --parsable SCRIPT`; returns the job id.
absl::StatusOr<std::string> SubmitSbatch(const std::string& script);

}  // namespace tidal::scheduler
