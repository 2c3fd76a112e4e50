// `tidal dashboard RUN_DIR [--port N] [--bind ADDR]`: serves the run dashboard
// (scheduler/dashboard.h) of a run directory, finished or still running (a running run's own
// controller serves the live one at metrics.port). Prints the URL, serves until Ctrl-C.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "core/metrics_server.h"
#include "scheduler/dashboard.h"
#include "tools/cli/command.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

std::function<absl::Status()> Setup(CLI::App& sub) {
  struct Args {
    std::string run_dir;
    int port = 0;
    std::string bind = "127.0.0.1";
  };
  auto args = std::make_shared<Args>();
  sub.add_option("run_dir", args->run_dir, "Run directory (holds metrics.jsonl)")->required();
  sub.add_option("--port", args->port, "Port to serve on (0: any free port)");
  sub.add_option("--bind", args->bind, "Address to listen on");
  return [args]() -> absl::Status {
    namespace fs = std::filesystem;
    if (!fs::exists(fs::path(args->run_dir) / "metrics.jsonl")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dashboard: ", args->run_dir, " holds no metrics.jsonl (not a run directory, or metrics.jsonl=false)"));
    }
    tidal::MetricsServerOptions o;
    o.host = args->bind;
    o.port = args->port;
    o.routes = tidal::scheduler::DashboardRoutes(args->run_dir, nullptr);
    // A finished run has no live metrics: /metrics answers empty.
    TIDAL_ASSIGN_OR_RETURN(auto server, tidal::MetricsServer::Start([] { return std::string(); }, o));
    struct sigaction sa = {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::cout << "dashboard of " << args->run_dir << " at " << server->base_url() << " (Ctrl-C to stop)"
              << std::endl;
    while (!g_stop.load()) usleep(100000);
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("dashboard", "Serve the web dashboard of a run directory", Setup);

}  // namespace
