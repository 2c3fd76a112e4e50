// `tidal worker`: the worker process (one per device slot). Launchers start it (fork/exec, srun);
// with `launch: external` an orchestrator does (Kubernetes), so every option can also come from
// the environment (scheduler/worker.h ResolveWorkerOptions). It dials the controller, registers
// with its one-time token (over CURVE when given credentials) and serves it.
#include "scheduler/worker.h"
#include "tools/cli/command.h"

namespace {

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto o = std::make_shared<tidal::scheduler::WorkerOptions>();
  sub.add_option("--controller", o->controller, "Controller endpoint (tcp://host:port; env TIDAL_CONTROLLER)");
  sub.add_option("--device", o->device, "Device slot: cpu:N or cuda:N (env TIDAL_DEVICE)");
  sub.add_option("--rank", o->rank, "Device index in the pool (env TIDAL_RANK or JOB_COMPLETION_INDEX)");
  sub.add_option("--credentials", o->credentials, "CURVE credentials file (env TIDAL_CREDENTIALS)");
  sub.add_option("--heartbeat-ms", o->heartbeat_ms, "Heartbeat interval");
  sub.add_option("--heartbeat-miss", o->heartbeat_miss, "Missed heartbeats before the controller counts as dead");
  sub.group("");  // hidden from `tidal --help`
  return [o]() -> absl::Status {
    TIDAL_RETURN_IF_ERROR(tidal::scheduler::ResolveWorkerOptions(*o));
    return tidal::scheduler::RunWorker(*o);
  };
}

TIDAL_CLI_COMMAND("worker", "Worker process started by `tidal run` (internal)", Setup);

}  // namespace
