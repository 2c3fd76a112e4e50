#include "scheduler/slurm.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tidal::scheduler {
namespace {

// Single-quoted for a POSIX shell.
std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

absl::Status MakeDirs(const std::string& path) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    cur += std::string(part) + "/";
    if (part.empty()) continue;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("mkdir ", cur, ": ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool InSlurmAllocation() {
  const char* id = std::getenv("SLURM_JOB_ID");
  return id != nullptr && *id != '\0';
}

std::vector<std::string> SplitArgs(const std::string& s) {
  return absl::StrSplit(s, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
}

SlurmLauncher::SlurmLauncher(LaunchOptions options, SlurmOptions slurm)
    : ProcessLauncher(std::move(options)), slurm_(std::move(slurm)) {}

ProcessLauncher::Command SlurmLauncher::MakeCommand(int device, const DeviceSlot& slot) const {
  Command c;
  c.argv = {slurm_.srun,
            "--nodes=1",
            "--ntasks=1",
            "--exact",              // the step gets only what it asks for; steps run side by side
            "--quit-on-interrupt",  // one SIGINT ends the step (Kill)
            "--kill-on-bad-exit=1",
            absl::StrCat("--job-name=tidal-worker-", device),
            absl::StrCat("--cpus-per-task=", slurm_.cpus_per_worker)};
  if (slot.kind == DeviceKind::kCuda) c.argv.push_back("--gpus-per-task=1");  // Slurm sets CUDA_VISIBLE_DEVICES
  if (!slurm_.pin_node.empty()) {
    for (int d : slurm_.pinned_devices) {
      if (d == device) c.argv.push_back("--nodelist=" + slurm_.pin_node);
    }
  }
  c.argv.insert(c.argv.end(), slurm_.srun_args.begin(), slurm_.srun_args.end());
  std::vector<std::string> worker = WorkerArgs(device, slot);
  c.argv.insert(c.argv.end(), worker.begin(), worker.end());
  if (slot.kind == DeviceKind::kCpu) c.env = {{"OMP_NUM_THREADS", "1"}, {"MKL_NUM_THREADS", "1"}};
  return c;
}

void SlurmLauncher::Kill(int device, int signal) {
  pid_t p = Pid(device);
  if (p <= 0) return;
  // Signalling srun itself with SIGKILL would orphan the remote step; SIGINT with
  // --quit-on-interrupt makes srun kill the step's tasks and exit. Other signals srun forwards.
  ::kill(p, signal == SIGKILL ? SIGINT : signal);
}

absl::StatusOr<pid_t> ExternalLauncher::Spawn(int device, const DeviceSlot&, const std::string&) {
  if (device >= static_cast<int>(state_.size())) state_.resize(device + 1, 0);
  state_[device] = 1;
  return static_cast<pid_t>(0);
}

std::vector<ExitedWorker> ExternalLauncher::Reap() {
  std::vector<ExitedWorker> out;
  for (size_t d = 0; d < state_.size(); ++d) {
    if (state_[d] == 2) {
      out.push_back({static_cast<int>(d), -1, SIGKILL});  // reads as "killed by signal 9"
      state_[d] = 0;
    }
  }
  return out;
}

pid_t ExternalLauncher::Pid(int device) const {
  return device < static_cast<int>(state_.size()) && state_[device] == 1 ? 0 : -1;
}

void ExternalLauncher::Kill(int device, int signal) {
  if (device < static_cast<int>(state_.size()) && state_[device] == 1 && signal == SIGKILL) state_[device] = 2;
}

void ExternalLauncher::Stop(absl::Duration) {
  // The workers got Shutdown over the control plane; their orchestrator owns the processes.
  state_.assign(state_.size(), 0);
}

absl::StatusOr<std::string> WriteSbatchScript(const Recipe& recipe, const std::string& tidal_binary) {
  const std::string dir = recipe.run_dir + "/slurm";
  TIDAL_RETURN_IF_ERROR(MakeDirs(recipe.run_dir + "/logs"));
  TIDAL_RETURN_IF_ERROR(MakeDirs(dir));
  const std::string recipe_path = dir + "/recipe.yaml";
  {
    std::ofstream out(recipe_path);
    out << RecipeToYaml(recipe);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", recipe_path));
  }
  const int workers = recipe.pool.device_set.size();
  const bool cuda = recipe.pool.device_set.kind == DeviceSet::Kind::kCuda;
  std::string s = "#!/bin/bash\n# Written by `tidal run` (launch: slurm); submit with sbatch.\n";
  absl::StrAppend(&s, "#SBATCH --job-name=tidal-", recipe.name, "\n");
  absl::StrAppend(&s, "#SBATCH --output=", recipe.run_dir, "/logs/slurm-%j.out\n");
  // One task per worker plus one (one CPU) for the controller itself.
  absl::StrAppend(&s, "#SBATCH --ntasks=", workers + 1, "\n");
  absl::StrAppend(&s, "#SBATCH --cpus-per-task=", recipe.slurm.cpus_per_worker, "\n");
  if (cuda) absl::StrAppend(&s, "#SBATCH --gpus=", workers, "\n");
  if (recipe.slurm.nodes > 0) absl::StrAppend(&s, "#SBATCH --nodes=", recipe.slurm.nodes, "\n");
  if (!recipe.slurm.partition.empty()) absl::StrAppend(&s, "#SBATCH --partition=", recipe.slurm.partition, "\n");
  if (!recipe.slurm.time.empty()) absl::StrAppend(&s, "#SBATCH --time=", recipe.slurm.time, "\n");
  for (const std::string& a : SplitArgs(recipe.slurm.sbatch_args)) absl::StrAppend(&s, "#SBATCH ", a, "\n");
  absl::StrAppend(&s, "set -euo pipefail\n");
  absl::StrAppend(&s, "exec ", ShellQuote(tidal_binary), " run --quiet ", ShellQuote(recipe_path), " launch=slurm\n");
  const std::string script = dir + "/tidal.sbatch";
  {
    std::ofstream out(script);
    out << s;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", script));
  }
  ::chmod(script.c_str(), 0755);
  return script;
}

absl::StatusOr<std::string> SubmitSbatch(const std::string& script) {
  const std::string cmd = absl::StrCat("sbatch --parsable ", ShellQuote(script), " 2>&1");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError(absl::StrCat("popen sbatch: ", strerror(errno)));
  std::string out;
  char buf[256];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int status = ::pclose(p);
  std::string text(absl::StripAsciiWhitespace(out));
  if (status != 0) {
    return absl::UnavailableError(absl::StrCat("sbatch ", script, " failed (", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                                               "): ", text));
  }
  // --parsable prints "jobid" or "jobid;cluster".
  return std::string(text.substr(0, text.find(';')));
}

}  // namespace tidal::scheduler
