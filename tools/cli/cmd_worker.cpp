// `tidal worker`: the worker process the controller fork/execs (one per device slot). Not meant
// to be run by hand: it registers with the controller at --controller and serves it.
#include "scheduler/worker.h"
#include "tools/cli/command.h"

namespace {

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto o = std::make_shared<tidal::scheduler::WorkerOptions>();
  sub.add_option("--controller", o->controller, "Controller endpoint (tcp://host:port)")->required();
  sub.add_option("--device", o->device, "Device slot: cpu:N or cuda:N")->required();
  sub.add_option("--rank", o->rank, "Device index in the pool")->required();
  sub.add_option("--heartbeat-ms", o->heartbeat_ms, "Heartbeat interval");
  sub.add_option("--heartbeat-miss", o->heartbeat_miss, "Missed heartbeats before the controller counts as dead");
  sub.group("");  // hidden from `tidal --help`
  return [o] { return tidal::scheduler::RunWorker(*o); };
}

TIDAL_CLI_COMMAND("worker", "Worker process started by `tidal run` (internal)", Setup);

}  // namespace
