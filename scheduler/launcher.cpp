#include "scheduler/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string_view>
#include <thread>

extern char** environ;

namespace tidal::scheduler {

std::string SelfExecutable() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "tidal";
  buf[n] = 0;
  return buf;
}

std::string ExitedWorker::Describe() const {
  if (WIFEXITED(status)) return absl::StrCat("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

ProcessLauncher::ProcessLauncher(LaunchOptions options) : options_(std::move(options)) {
  if (options_.binary.empty()) options_.binary = SelfExecutable();
}

ProcessLauncher::~ProcessLauncher() { Stop(absl::Seconds(2)); }

std::vector<std::string> ProcessLauncher::WorkerArgs(int device, const DeviceSlot& slot) const {
  std::vector<std::string> args = {options_.binary, "worker", "--controller", options_.controller,
                                   "--device", slot.Name(), "--rank", std::to_string(device)};
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  return args;
}

absl::StatusOr<pid_t> ProcessLauncher::Spawn(int device, const DeviceSlot& slot, const std::string& token) {
  if (device >= static_cast<int>(pids_.size())) pids_.resize(device + 1, -1);
  if (pids_[device] > 0) {
    return absl::FailedPreconditionError(absl::StrFormat("worker %d already runs (pid %d)", device, pids_[device]));
  }
  Command cmd = MakeCommand(device, slot);
  cmd.env.emplace_back("TIDAL_WORKER_TOKEN", token);
  cmd.env.emplace_back("TIDAL_CREDENTIALS", options_.credentials);  // "" = none (not the parent's)
  std::string log = absl::StrCat(options_.log_dir, "/worker-", device, ".log");
  std::vector<char*> argv;
  for (auto& a : cmd.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The child's environment, built before fork: the parent is multi-threaded, so the child may
  // only make async-signal-safe calls (no setenv/malloc) until exec.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool replaced = false;
    for (const auto& [k, v] : cmd.env) replaced |= kv.size() > k.size() && kv.substr(0, k.size()) == k && kv[k.size()] == '=';
    if (!replaced) env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : cmd.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open worker log ", log, ": ", strerror(errno)));
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork for worker ", device, ": ", strerror(errno)));
  }
  if (pid == 0) {
    // Child: the parent is multi-threaded, so only plain libc calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    setpgid(0, 0);  // Ctrl-C reaches the controller only; it stops the workers itself
    execvpe(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(log_fd);
  pids_[device] = pid;
  return pid;
}

std::vector<ExitedWorker> ProcessLauncher::Reap() {
  std::vector<ExitedWorker> out;
  for (size_t d = 0; d < pids_.size(); ++d) {
    if (pids_[d] <= 0) continue;
    int status = 0;
    pid_t r = waitpid(pids_[d], &status, WNOHANG);
    if (r == pids_[d]) {
      out.push_back({static_cast<int>(d), pids_[d], status});
      pids_[d] = -1;
    }
  }
  return out;
}

pid_t ProcessLauncher::Pid(int device) const {
  return device < static_cast<int>(pids_.size()) ? pids_[device] : -1;
}

void ProcessLauncher::Kill(int device, int signal) {
  pid_t p = Pid(device);
  if (p > 0) kill(p, signal);
}

void ProcessLauncher::Stop(absl::Duration grace) {
  bool any = false;
  for (size_t d = 0; d < pids_.size(); ++d) {
    if (pids_[d] > 0) {
      Kill(static_cast<int>(d), SIGTERM);
      any = true;
    }
  }
  if (!any) return;
  auto deadline = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(grace);
  while (std::chrono::steady_clock::now() < deadline) {
    Reap();
    bool left = false;
    for (pid_t p : pids_) left |= p > 0;
    if (!left) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& p : pids_) {
    if (p > 0) {
      kill(p, SIGKILL);
      int status;
      waitpid(p, &status, 0);
      p = -1;
    }
  }
}

ProcessLauncher::Command LocalLauncher::MakeCommand(int device, const DeviceSlot& slot) const {
  Command c;
  c.argv = WorkerArgs(device, slot);
  if (slot.kind == DeviceKind::kCpu) {
    c.env = {{"OMP_NUM_THREADS", "1"}, {"MKL_NUM_THREADS", "1"}};
  } else {
    c.env = {{"CUDA_VISIBLE_DEVICES", std::to_string(slot.index)}};
  }
  return c;
}

}  // namespace tidal::scheduler
