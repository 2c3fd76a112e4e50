#include "envs/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "envs/helper_binary.h"

extern char** environ;

namespace tidal::envs {

using nlohmann::json;

json SandboxResult::ToJson() const {
  return {{"stdout", stdout_text}, {"stderr", stderr_text}, {"exit_code", exit_code},
          {"signal", signal},      {"time_s", time_s},      {"timed_out", timed_out},
          {"truncated", truncated}, {"error", error}};
}

absl::StatusOr<SandboxRequest> SandboxRequestFromJson(const json& body) {
  if (!body.is_object()) return absl::InvalidArgumentError("request: expected a JSON object");
  SandboxRequest r;
  for (const auto& [key, v] : body.items()) {
    if (key == "language" || key == "code" || key == "stdin") {
      if (!v.is_string()) return absl::InvalidArgumentError(key + ": expected a string");
      (key == "language" ? r.language : key == "code" ? r.code : r.stdin_data) =
          v.get<std::string>();
    } else if (key == "timeout_s") {
      if (!v.is_number()) return absl::InvalidArgumentError("timeout_s: expected a number");
      r.timeout_s = v.get<double>();
    } else if (key == "memory_mb") {
      if (!v.is_number_integer()) return absl::InvalidArgumentError("memory_mb: expected an integer");
      r.memory_mb = v.get<int64_t>();
    } else {
      return absl::InvalidArgumentError(
          key + ": unknown field (known: language, code, stdin, timeout_s, memory_mb)");
    }
  }
  if (r.language.empty()) return absl::InvalidArgumentError("language: required (python3 or bash)");
  return r;
}

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  void Close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// A socketpair rather than a pipe where we write, so a vanished reader gives EPIPE via
// MSG_NOSIGNAL instead of SIGPIPE in this (server) process.
absl::Status Pair(Fd* ours, Fd* theirs, bool socket) {
  int p[2];
  int rc = socket ? ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p)
                  : ::pipe2(p, O_CLOEXEC);
  if (rc != 0) return absl::InternalError(absl::StrCat("sandbox: pipe: ", strerror(errno)));
  // pipe: p[0] read end (ours), p[1] write end (theirs). socketpair: symmetric.
  ours->fd = p[0];
  theirs->fd = p[1];
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SandboxResult> RunSandboxed(const SandboxRequest& req, const SandboxLimits& lim,
                                           int slot) {
  std::string interpreter, file;
  if (req.language == "python3" || req.language == "python") {
    interpreter = lim.python;
    file = "main.py";
  } else if (req.language == "bash") {
    interpreter = lim.bash;
    file = "main.sh";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("language: '", req.language, "' is not supported (python3, bash)"));
  }
  if (!(req.timeout_s > 0) || req.timeout_s > lim.max_timeout_s) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout_s: must be in (0, ", lim.max_timeout_s, "], got ", req.timeout_s));
  }
  if (req.memory_mb < 16 || req.memory_mb > lim.max_memory_mb) {
    return absl::InvalidArgumentError(absl::StrCat("memory_mb: must be in [16, ",
                                                   lim.max_memory_mb, "], got ", req.memory_mb));
  }
  TIDAL_ASSIGN_OR_RETURN(std::string helper,
                         FindHelperBinary("tidal-sandbox-exec", "TIDAL_SANDBOX_EXEC"));

  Fd in_ours, in_theirs, out_ours, out_theirs, err_ours, err_theirs, rep_ours, rep_theirs,
      code_ours, code_theirs;
  TIDAL_RETURN_IF_ERROR(Pair(&in_ours, &in_theirs, true));
  TIDAL_RETURN_IF_ERROR(Pair(&out_ours, &out_theirs, false));
  TIDAL_RETURN_IF_ERROR(Pair(&err_ours, &err_theirs, false));
  TIDAL_RETURN_IF_ERROR(Pair(&rep_ours, &rep_theirs, false));
  TIDAL_RETURN_IF_ERROR(Pair(&code_ours, &code_theirs, true));

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // dup2 clears close-on-exec on the targets; every other descriptor of this process is
  // close-on-exec (or closed by the helper before it runs the program).
  posix_spawn_file_actions_adddup2(&fa, in_theirs.fd, 0);
  posix_spawn_file_actions_adddup2(&fa, out_theirs.fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_theirs.fd, 2);
  posix_spawn_file_actions_adddup2(&fa, rep_theirs.fd, 3);
  posix_spawn_file_actions_adddup2(&fa, code_theirs.fd, 4);
  // The CPU limit sits one second above the wall limit: a single-threaded loop then always
  // ends on the wall clock (reported as timed_out), instead of racing SIGXCPU against it; the
  // CPU limit still stops code that burns several cores at once.
  const long cpu_s = static_cast<long>(std::ceil(req.timeout_s)) + 1;
  std::vector<std::string> args = {helper,
                                   "--interpreter", interpreter,
                                   "--file", file,
                                   "--uid", std::to_string(lim.base_uid + slot),
                                   "--cpu-s", std::to_string(cpu_s),
                                   "--wall-s", std::to_string(req.timeout_s),
                                   "--mem-mb", std::to_string(req.memory_mb),
                                   "--procs", std::to_string(lim.max_procs),
                                   "--fsize-mb", std::to_string(lim.file_size_mb),
                                   "--disk-mb", std::to_string(lim.disk_mb)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, helper.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  in_theirs.Close();
  out_theirs.Close();
  err_theirs.Close();
  rep_theirs.Close();
  code_theirs.Close();
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("sandbox: cannot start ", helper, ": ", strerror(rc)));
  }

  // The helper reads the whole program before anything else.
  for (size_t off = 0; off < req.code.size();) {
    ssize_t w = ::send(code_ours.fd, req.code.data() + off, req.code.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break;  // the helper died; its report (or absence) says why
    off += static_cast<size_t>(w);
  }
  code_ours.Close();

  SandboxResult result;
  size_t in_off = 0;
  if (req.stdin_data.empty()) in_ours.Close();
  ::fcntl(in_ours.fd, F_SETFL, O_NONBLOCK);
  // The helper enforces the wall clock itself; this backstop covers a stuck helper.
  const auto backstop = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(req.timeout_s + 5.0));
  std::string report;
  bool helper_killed = false;
  while (out_ours.fd >= 0 || err_ours.fd >= 0 || rep_ours.fd >= 0) {
    std::vector<pollfd> p;
    for (int fd : {out_ours.fd, err_ours.fd, rep_ours.fd}) {
      if (fd >= 0) p.push_back({fd, POLLIN, 0});
    }
    if (in_ours.fd >= 0) p.push_back({in_ours.fd, POLLOUT, 0});
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          backstop - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      ::kill(pid, SIGKILL);  // the program's init dies with it (PDEATHSIG)
      helper_killed = true;
      break;
    }
    int n = ::poll(p.data(), p.size(), static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (const auto& q : p) {
      if (q.revents == 0) continue;
      if (q.fd == in_ours.fd) {
        ssize_t w = ::send(in_ours.fd, req.stdin_data.data() + in_off,
                           req.stdin_data.size() - in_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) in_off += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) in_ours.Close();
        if (in_off == req.stdin_data.size()) in_ours.Close();  // EOF for the program
        continue;
      }
      char buf[65536];
      ssize_t got = ::read(q.fd, buf, sizeof buf);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      Fd* which = q.fd == out_ours.fd ? &out_ours : q.fd == err_ours.fd ? &err_ours : &rep_ours;
      if (got <= 0) {
        which->Close();
        continue;
      }
      std::string* dst = which == &out_ours   ? &result.stdout_text
                         : which == &err_ours ? &result.stderr_text
                                              : &report;
      const size_t cap = which == &rep_ours ? (1u << 16) : lim.max_output_bytes;
      const size_t room = cap > dst->size() ? cap - dst->size() : 0;
      dst->append(buf, std::min(room, static_cast<size_t>(got)));
      if (static_cast<size_t>(got) > room && which != &rep_ours) result.truncated = true;
    }
  }
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  if (helper_killed) {
    return absl::InternalError("sandbox: tidal-sandbox-exec did not finish; killed");
  }
  json rep = json::parse(report, nullptr, /*allow_exceptions=*/false);
  if (rep.is_discarded() || !rep.is_object()) {
    return absl::InternalError(absl::StrCat("sandbox: tidal-sandbox-exec ended without a report (",
                                            WIFSIGNALED(wstatus) ? "signal " : "status ",
                                            WIFSIGNALED(wstatus) ? WTERMSIG(wstatus)
                                                                 : WEXITSTATUS(wstatus),
                                            ")"));
  }
  if (rep.contains("setup_error")) {
    return absl::FailedPreconditionError(
        absl::StrCat("sandbox: setup failed, code not run: ",
                     rep["setup_error"].get<std::string>()));
  }
  result.time_s = rep.value("time_s", 0.0);
  result.timed_out = rep.value("timed_out", false);
  if (rep.contains("exit_code")) {
    result.exit_code = rep["exit_code"].get<int>();
  } else {
    result.signal = rep.value("signal", 0);
  }
  if (result.timed_out) {
    result.error = absl::StrCat("time limit of ", req.timeout_s, " s exceeded; killed");
  } else if (result.signal == SIGXCPU || result.signal == SIGKILL) {
    result.error = result.signal == SIGXCPU
                       ? absl::StrCat("CPU time limit of ", cpu_s, " s exceeded")
                       : "killed (CPU time or memory limit)";
  } else if (result.signal != 0) {
    const char* name = ::sigdescr_np(result.signal);
    result.error = absl::StrCat("killed by signal ", result.signal, " (", name ? name : "?", ")");
  }
  if (result.truncated && result.error.empty()) {
    result.error = absl::StrCat("output truncated to ", lim.max_output_bytes, " bytes per stream");
  }
  return result;
}

}  // namespace tidal::envs
