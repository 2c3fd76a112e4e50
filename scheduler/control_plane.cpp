#include "scheduler/control_plane.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "core/curve_auth.h"
#include "core/logging.h"
#include "scheduler/slurm.h"

namespace tidal::scheduler {
namespace {

// IPv4 of interface `name`, or of the first up, non-loopback interface when `name` is empty.
std::string InterfaceAddress(const std::string& name) {
  struct ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string out;
  for (struct ifaddrs* i = list; i != nullptr && out.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    if (!name.empty() ? name != i->ifa_name : ((i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))) continue;
    char buf[INET_ADDRSTRLEN];
    auto* sin = reinterpret_cast<struct sockaddr_in*>(i->ifa_addr);
    if (inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)) != nullptr) out = buf;
  }
  freeifaddrs(list);
  return out;
}

bool IsIpv4Literal(const std::string& s) {
  struct in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

absl::Status WritePrivateFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
  ::fchmod(fd, 0600);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok &= ::close(fd) == 0;
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat("write ", path, ": ", strerror(errno)));
}

}  // namespace

absl::StatusOr<ControlPlaneSetup> PrepareControlPlane(const Recipe& recipe, const std::string& run_dir) {
  ControlPlaneSetup out;
  const std::string& bind = recipe.control.bind;
  const std::string host = bind.find(':') != std::string::npos ? absl::StrCat("[", bind, "]") : bind;
  out.router.endpoint = absl::StrCat("tcp://", host, ":", recipe.control.port);
  const bool curve = recipe.control.curve == CurveMode::kOn || !IsLoopbackEndpoint(out.router.endpoint);
  const bool http_open = (recipe.metrics.port >= 0 && !IsLoopbackHost(recipe.metrics.bind)) ||
                         (recipe.openai.serve && !IsLoopbackHost(recipe.openai.bind));
  const std::string secrets = run_dir + "/secrets";
  if (curve || http_open) {
    if (::mkdir(secrets.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("mkdir ", secrets, ": ", strerror(errno)));
    }
    ::chmod(secrets.c_str(), 0700);
  }
  std::string secret;
  if (curve) {
    absl::StatusOr<RunCredentials> creds = recipe.control.credentials.empty()
                                               ? RunCredentials::Generate()
                                               : RunCredentials::Load(recipe.control.credentials);
    if (!creds.ok()) return creds.status();
    if (creds->server.secret_key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("control.credentials ", recipe.control.credentials,
                                                     ": no server_secret (a worker's copy cannot run a controller)"));
    }
    out.router.curve = CurveServerKeys{creds->server.public_key, creds->server.secret_key, {creds->client.public_key}};
    out.worker_credentials = secrets + "/worker.json";
    TIDAL_RETURN_IF_ERROR(creds->Save(out.worker_credentials, RunCredentials::Scope::kWorker));
    secret = creds->secret;
    out.credentials = *std::move(creds);
  } else if (recipe.launch == LaunchKind::kExternal) {
    return absl::InvalidArgumentError(
        "launch: external needs CURVE credentials (externally started workers prove themselves with the run secret): "
        "bind the control socket off loopback or set control.curve: on, and give control.credentials");
  }
  if (recipe.launch == LaunchKind::kExternal && recipe.control.credentials.empty()) {
    return absl::InvalidArgumentError(
        "launch: external needs control.credentials: the workers must hold the same run secret and keys (tidal k8s "
        "render writes them)");
  }
  out.auth = std::make_unique<WorkerAuth>(recipe.launch == LaunchKind::kExternal ? secret : "");
  if (http_open) {
    if (sodium_init() < 0) return absl::InternalError("libsodium: sodium_init failed");
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
    out.http_token = hex;
    TIDAL_RETURN_IF_ERROR(WritePrivateFile(secrets + "/http_token", out.http_token + "\n"));
  }
  return out;
}

absl::StatusOr<std::string> AdvertisedEndpoint(const Recipe& recipe, const std::string& bound) {
  size_t colon = bound.rfind(':');
  if (!absl::StartsWith(bound, "tcp://") || colon == std::string::npos) return bound;
  const std::string port = bound.substr(colon + 1);
  std::string host = recipe.control.advertise;
  if (host.empty()) {
    const std::string& bind = recipe.control.bind;
    if (bind == "0.0.0.0" || bind == "*") {
      host = InterfaceAddress("");
    } else if (IsIpv4Literal(bind) || IsLoopbackHost(bind) || bind.find(':') != std::string::npos) {
      host = bind.find(':') != std::string::npos ? absl::StrCat("[", bind, "]") : bind;
    } else {
      host = InterfaceAddress(bind);  // an interface name
      if (host.empty()) host = bind;  // or a host name
    }
  }
  if (host.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "control.bind ", recipe.control.bind, ": found no address for workers to dial; set control.advertise"));
  }
  return absl::StrCat("tcp://", host, ":", port);
}

absl::Status WriteControlInfo(const std::string& run_dir, const std::string& endpoint, const ControlPlaneSetup& setup,
                              std::string_view launcher) {
  nlohmann::json j;
  j["endpoint"] = endpoint;
  j["curve"] = setup.credentials.has_value();
  j["server_public"] = setup.credentials ? setup.credentials->server.public_key : "";
  j["worker_credentials"] = setup.worker_credentials;
  j["launch"] = std::string(launcher);
  std::ofstream out(run_dir + "/control.json");
  out << j.dump(2) << "\n";
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", run_dir, "/control.json"));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Launcher>> MakeLauncher(const Recipe& recipe, LaunchOptions options,
                                                       const std::vector<int>& train_group) {
  switch (recipe.launch) {
    case LaunchKind::kLocal:
      return std::unique_ptr<Launcher>(std::make_unique<LocalLauncher>(std::move(options)));
    case LaunchKind::kExternal:
      return std::unique_ptr<Launcher>(std::make_unique<ExternalLauncher>());
    case LaunchKind::kSlurm: {
      if (!InSlurmAllocation()) {
        return absl::FailedPreconditionError(
            "launch: slurm: not inside a Slurm allocation (SLURM_JOB_ID unset); `tidal run` submits one itself, or "
            "run it under salloc/sbatch");
      }
      SlurmOptions s;
      s.cpus_per_worker = recipe.slurm.cpus_per_worker;
      s.srun_args = SplitArgs(recipe.slurm.srun_args);
      // CPU train ranks talk over POSIX shared memory: keep them on one node. CUDA ranks use NCCL,
      // whose id the controller hands out over the control plane, so they may span nodes.
      if (train_group.size() > 1 && recipe.pool.device_set.kind == DeviceSet::Kind::kCpu) {
        const char* node = std::getenv("SLURMD_NODENAME");
        if (node == nullptr || *node == '\0') {
          return absl::FailedPreconditionError(
              "launch: slurm with several CPU train ranks: SLURMD_NODENAME is unset, so the train ranks cannot be "
              "placed on the controller's node (they share memory)");
        }
        s.pin_node = node;
        s.pinned_devices = train_group;
      }
      return std::unique_ptr<Launcher>(std::make_unique<SlurmLauncher>(std::move(options), std::move(s)));
    }
  }
  return absl::InternalError("unknown launch kind");
}

std::string ReadHttpToken(const std::string& run_dir) {
  std::ifstream in(run_dir + "/secrets/http_token");
  std::string token;
  std::getline(in, token);
  return std::string(absl::StripAsciiWhitespace(token));
}

}  // namespace tidal::scheduler
