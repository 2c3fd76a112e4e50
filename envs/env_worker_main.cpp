// tidal-env-worker: hosts one environment plugin instance for an IsolatedBackend.
//
// Usage (by IsolatedBackend only): tidal-env-worker --fd 3 --parent PID
// Serves requests from the socket on --fd (env_worker_protocol.h) until EOF, then destroys the
// instance and exits 0. It dies with its parent (PR_SET_PDEATHSIG), so a killed rollout worker
// leaves no env-workers behind. Calls run without a time limit here: the host enforces it by
// killing this process.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/numbers.h"
#include "envs/env_backend.h"
#include "envs/env_worker_protocol.h"

namespace {

using tidal::envs::EnvBackend;

std::vector<std::string> Reply(const absl::StatusOr<std::string>& r) {
  if (r.ok()) return {"0", *r};
  return {std::to_string(static_cast<int>(r.status().code())), std::string(r.status().message())};
}

int Serve(int fd) {
  std::unique_ptr<EnvBackend> backend;
  while (true) {
    auto msg = tidal::envs::ReadMessage(fd);
    if (!msg.ok()) return 0;  // host closed the socket (or vanished): done
    const auto& f = *msg;
    absl::StatusOr<std::string> result;
    const std::string op = f.empty() ? "" : f[0];
    if (op == "create" && f.size() == 3 && !backend) {
      tidal::envs::EnvSpec spec;
      spec.plugin = f[1];
      spec.args = nlohmann::json::parse(f[2], nullptr, /*allow_exceptions=*/false);
      spec.timeout_s = 0;  // the host kills this process instead
      auto opened = tidal::envs::OpenInProcessBackend(spec);
      if (opened.ok()) {
        backend = std::move(*opened);
        result = std::string("created");
      } else {
        result = opened.status();
      }
    } else if (!backend) {
      result = absl::FailedPreconditionError("env-worker: '" + op + "' before create");
    } else if (op == "reset" && f.size() == 3) {
      uint64_t seed = 0;
      if (!absl::SimpleAtoi(f[1], &seed)) {
        result = absl::InvalidArgumentError("env-worker: bad seed '" + f[1] + "'");
      } else {
        result = backend->Reset(seed, f[2]);
      }
    } else if (op == "step" && f.size() == 2) {
      result = backend->Step(f[1]);
    } else if (op == "score" && f.size() == 3) {
      result = backend->Score(f[1], f[2]);
    } else {
      result = absl::InvalidArgumentError("env-worker: malformed request '" + op + "'");
    }
    if (!tidal::envs::WriteMessage(fd, Reply(result)).ok()) return 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int fd = -1;
  long parent = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--fd") == 0) fd = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--parent") == 0) parent = std::atol(argv[i + 1]);
  }
  if (fd < 0 || parent <= 0) {
    std::fprintf(stderr,
                 "tidal-env-worker: started by tidal to host an isolated env plugin; "
                 "usage: tidal-env-worker --fd N --parent PID\n");
    return 2;
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) return 0;  // the parent died before prctl took effect
  return Serve(fd);
}
