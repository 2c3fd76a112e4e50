#include "scheduler/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

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

LocalLauncher::LocalLauncher(LaunchOptions options) : options_(std::move(options)) {
  if (options_.binary.empty()) options_.binary = SelfExecutable();
}

LocalLauncher::~LocalLauncher() { Stop(absl::Seconds(2)); }

namespace {

// 128 bits from the kernel's CSPRNG, as hex.
absl::StatusOr<std::string> RandomToken() {
  unsigned char bytes[16];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open /dev/urandom: ", strerror(errno)));
  ssize_t n = read(fd, bytes, sizeof bytes);
  close(fd);
  if (n != static_cast<ssize_t>(sizeof bytes)) return absl::InternalError("short read from /dev/urandom");
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace

bool LocalLauncher::ConsumeToken(int device, std::string_view token) {
  if (device < 0 || device >= static_cast<int>(tokens_.size())) return false;
  std::string& want = tokens_[device];
  if (want.empty() || token.size() != want.size()) return false;
  unsigned char diff = 0;  // constant time: no early exit on the first wrong byte
  for (size_t i = 0; i < want.size(); ++i) diff |= static_cast<unsigned char>(want[i] ^ token[i]);
  if (diff != 0) return false;
  want.clear();
  return true;
}

absl::StatusOr<pid_t> LocalLauncher::Spawn(int device, const DeviceSlot& slot) {
  if (device >= static_cast<int>(pids_.size())) pids_.resize(device + 1, -1);
  if (device >= static_cast<int>(tokens_.size())) tokens_.resize(device + 1);
  if (pids_[device] > 0) {
    return absl::FailedPreconditionError(absl::StrFormat("worker %d already runs (pid %d)", device, pids_[device]));
  }
  std::string log = absl::StrCat(options_.log_dir, "/worker-", device, ".log");
  std::string dev = slot.Name();
  std::string rank = std::to_string(device);
  std::vector<std::string> args = {options_.binary, "worker", "--controller", options_.controller,
                                   "--device", dev, "--rank", rank};
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  TIDAL_ASSIGN_OR_RETURN(std::string token, RandomToken());
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
    // Child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    setpgid(0, 0);  // Ctrl-C reaches the controller only; it stops the workers itself
    if (slot.kind == DeviceKind::kCpu) {
      setenv("OMP_NUM_THREADS", "1", 1);
      setenv("MKL_NUM_THREADS", "1", 1);
    } else {
      setenv("CUDA_VISIBLE_DEVICES", std::to_string(slot.index).c_str(), 1);
    }
    setenv(kWorkerTokenEnv, token.c_str(), 1);
    execv(options_.binary.c_str(), argv.data());
    _exit(127);
  }
  close(log_fd);
  pids_[device] = pid;
  tokens_[device] = std::move(token);
  return pid;
}

std::vector<ExitedWorker> LocalLauncher::Reap() {
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

pid_t LocalLauncher::Pid(int device) const {
  return device < static_cast<int>(pids_.size()) ? pids_[device] : -1;
}

void LocalLauncher::Kill(int device, int signal) {
  pid_t p = Pid(device);
  if (p > 0) kill(p, signal);
}

void LocalLauncher::Stop(absl::Duration grace) {
  bool any = false;
  for (pid_t p : pids_) {
    if (p > 0) {
      kill(p, SIGTERM);
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

}  // namespace tidal::scheduler
