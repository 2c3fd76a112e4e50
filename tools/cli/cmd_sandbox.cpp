// `tidal sandbox serve`: the HTTP service that runs untrusted code for environments
// (envs/sandbox_server.h documents the API and limits). Runs until SIGINT/SIGTERM.
#include <signal.h>

#include <iostream>

#include "envs/sandbox_server.h"
#include "tools/cli/command.h"

namespace {

struct ServeOptions {
  tidal::envs::SandboxServerOptions server;
  int64_t output_kb = 64;
};

absl::Status Serve(ServeOptions o) {
  o.server.limits.max_output_bytes = static_cast<size_t>(o.output_kb) << 10;
  if (o.server.workers < 1) return absl::InvalidArgumentError("--workers: must be >= 1");
  if (o.server.queue_limit < 0) return absl::InvalidArgumentError("--queue: must be >= 0");
  // Block the stop signals in every thread; this one waits for them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  tidal::envs::SandboxServer server(o.server);
  TIDAL_RETURN_IF_ERROR(server.Start());
  // A self-check, so a machine without namespace support fails here, not on the first call.
  auto probe = tidal::envs::RunSandboxed({"bash", "echo ok", "", 5.0, 256}, o.server.limits,
                                         /*slot=*/0);
  if (!probe.ok()) return probe.status();
  if (probe->stdout_text != "ok\n") {
    return absl::InternalError("sandbox self-check failed: " + probe->ToJson().dump());
  }
  std::cout << "tidal sandbox: listening on http://" << o.server.bind << ":" << server.port()
            << " (workers " << o.server.workers << ", queue " << o.server.queue_limit
            << "); POST /run, GET /health" << std::endl;
  int sig = 0;
  sigwait(&stop, &sig);
  std::cout << "tidal sandbox: stopping (signal " << sig << ")" << std::endl;
  server.Stop();
  return absl::OkStatus();
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto o = std::make_shared<ServeOptions>();
  sub.add_option("--port", o->server.port, "TCP port (0: any free port)")->capture_default_str();
  sub.add_option("--bind", o->server.bind, "address to listen on")->capture_default_str();
  sub.add_option("--workers", o->server.workers, "programs run at once")->capture_default_str();
  sub.add_option("--queue", o->server.queue_limit, "requests that may wait for a worker")
      ->capture_default_str();
  sub.add_option("--max-timeout", o->server.limits.max_timeout_s, "largest timeout_s accepted")
      ->capture_default_str();
  sub.add_option("--max-memory-mb", o->server.limits.max_memory_mb,
                 "largest memory_mb accepted")->capture_default_str();
  sub.add_option("--procs", o->server.limits.max_procs, "processes per program")
      ->capture_default_str();
  sub.add_option("--output-kb", o->output_kb, "stdout/stderr cap per stream")
      ->capture_default_str();
  sub.add_option("--python", o->server.limits.python, "python interpreter inside the sandbox")
      ->capture_default_str();
  return [o] { return Serve(*o); };
}

TIDAL_CLI_COMMAND("sandbox serve", "Serve the code-execution sandbox over HTTP", Setup);

}  // namespace
