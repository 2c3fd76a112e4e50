// IsolatedBackend: runs the plugin in a tidal-env-worker process (envs/env_worker_main.cpp).
//
// The worker is started with posix_spawn (no fork of this possibly multi-threaded, large
// process) and talks over a socketpair (env_worker_protocol.h). Each call has a deadline: on
// timeout the worker is killed; on EOF it has crashed and is reaped, and its signal or exit
// status goes into the error. Either way the next call spawns a fresh worker and re-creates the
// instance from the same args, so one bad task fails one trajectory.
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <thread>

#include "envs/env_backend.h"
#include "envs/env_worker_protocol.h"
#include "envs/helper_binary.h"

extern char** environ;

namespace tidal::envs {
namespace {

std::string DescribeWait(int wstatus) {
  if (WIFSIGNALED(wstatus)) {
    const int sig = WTERMSIG(wstatus);
    const char* name = ::sigdescr_np(sig);
    return absl::StrCat("killed by signal ", sig, " (", name ? name : "?", ")");
  }
  if (WIFEXITED(wstatus)) return absl::StrCat("exited with status ", WEXITSTATUS(wstatus));
  return "ended";
}

class IsolatedBackend final : public EnvBackend {
 public:
  IsolatedBackend(EnvSpec spec, std::string binary)
      : spec_(std::move(spec)), who_(PluginErrorPrefix(spec_.plugin)),
        binary_(std::move(binary)) {}
  ~IsolatedBackend() override { Stop(/*graceful=*/true); }

  // Starts the worker and creates the instance; also used to restart after a failure.
  absl::Status Start() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return absl::InternalError(absl::StrCat(who_, ": socketpair: ", strerror(errno)));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    // dup2 onto 3 clears close-on-exec there; the other ends stay close-on-exec.
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    const std::string parent = std::to_string(::getpid());
    std::vector<std::string> args = {binary_, "--fd", "3", "--parent", parent};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, binary_.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(sv[1]);
    if (rc != 0) {
      ::close(sv[0]);
      return absl::InternalError(
          absl::StrCat(who_, ": cannot start env-worker ", binary_, ": ", strerror(rc)));
    }
    pid_ = pid;
    fd_ = sv[0];
    auto reply = Call("create", {spec_.plugin, spec_.args.dump()});
    if (!reply.ok()) {
      Stop(/*graceful=*/true);
      return reply.status();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Reset(uint64_t seed, const std::string& options_json) override {
    return CallLive("reset", {std::to_string(seed), options_json});
  }
  absl::StatusOr<std::string> Step(const std::string& model_turn) override {
    return CallLive("step", {model_turn});
  }
  absl::StatusOr<std::string> Score(const std::string& hidden_json,
                                    const std::string& response) override {
    return CallLive("score", {hidden_json, response});
  }

 private:
  // Restarts the worker if an earlier call killed it, then calls.
  absl::StatusOr<std::string> CallLive(const std::string& op, std::vector<std::string> args) {
    if (pid_ < 0) {
      absl::Status s = Start();
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat(s.message(), " (while restarting the "
                                                                "env-worker after a failure)"));
      }
    }
    return Call(op, std::move(args));
  }

  absl::StatusOr<std::string> Call(const std::string& op, std::vector<std::string> args) {
    args.insert(args.begin(), op);
    // create also covers starting the process and loading the library: allow at least that.
    constexpr double kStartupAllowanceS = 30.0;
    const double limit_s =
        op == "create" && spec_.timeout_s > 0 ? std::max(spec_.timeout_s, kStartupAllowanceS)
                                              : spec_.timeout_s;
    const auto deadline =
        limit_s > 0 ? std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(limit_s))
                    : std::chrono::steady_clock::time_point::max();
    absl::Status sent = WriteMessage(fd_, args);
    absl::StatusOr<std::vector<std::string>> reply =
        sent.ok() ? ReadMessage(fd_, deadline) : absl::StatusOr<std::vector<std::string>>(sent);
    if (!reply.ok()) {
      const pid_t pid = pid_;
      if (absl::IsDeadlineExceeded(reply.status())) {
        ::kill(pid_, SIGKILL);
        Stop(/*graceful=*/false);
        return absl::DeadlineExceededError(absl::StrCat(
            who_, ": ", op, "() exceeded its time limit of ", limit_s,
            " s; env-worker pid ", pid, " killed (a fresh one starts on the next call)"));
      }
      const std::string how = Stop(/*graceful=*/false);
      return absl::InternalError(absl::StrCat(who_, ": env-worker pid ", pid, " ", how,
                                              " during ", op,
                                              "() (a fresh one starts on the next call)"));
    }
    const auto& f = *reply;
    int code = -1;
    if (f.size() != 2 || !absl::SimpleAtoi(f[0], &code)) {
      Stop(/*graceful=*/false);
      return absl::InternalError(
          absl::StrCat(who_, ": env-worker sent a malformed reply to ", op, "()"));
    }
    if (code != 0) return absl::Status(static_cast<absl::StatusCode>(code), f[1]);
    return f[1];
  }

  // Ends the worker and reaps it; returns how it ended. Graceful: close the socket (the worker
  // destroys the instance and exits on EOF) and give it a moment before SIGKILL.
  std::string Stop(bool graceful) {
    if (pid_ < 0) return "not running";
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    int wstatus = 0;
    pid_t r = 0;
    if (graceful) {
      for (int i = 0; i < 100 && (r = ::waitpid(pid_, &wstatus, WNOHANG)) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } else {
      // A crashed worker is already gone (or about to be); give it a moment to be reapable
      // so the error can name the signal, then make sure.
      for (int i = 0; i < 20 && (r = ::waitpid(pid_, &wstatus, WNOHANG)) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    if (r == 0) {
      ::kill(pid_, SIGKILL);
      r = ::waitpid(pid_, &wstatus, 0);
    }
    pid_ = -1;
    return r > 0 ? DescribeWait(wstatus) : "could not be reaped";
  }

  const EnvSpec spec_;
  const std::string who_;
  const std::string binary_;
  pid_t pid_ = -1;
  int fd_ = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EnvBackend>> OpenIsolatedBackend(const EnvSpec& spec) {
  auto binary = FindHelperBinary("tidal-env-worker", "TIDAL_ENV_WORKER");
  if (!binary.ok()) {
    return absl::Status(binary.status().code(), absl::StrCat(PluginErrorPrefix(spec.plugin),
                                                             ": isolate: ",
                                                             binary.status().message()));
  }
  auto backend = std::make_unique<IsolatedBackend>(spec, *binary);
  TIDAL_RETURN_IF_ERROR(backend->Start());
  return std::unique_ptr<EnvBackend>(std::move(backend));
}

}  // namespace tidal::envs
