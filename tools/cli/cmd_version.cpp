// `tidal version`: the tidal version and the versions of the libraries it was built against.
#include <zmq.h>

#include <iostream>

#include "tools/cli/command.h"
#include "core/version.h"

namespace {
std::function<absl::Status()> Setup(CLI::App& sub) {
  return [] {
    int major = 0, minor = 0, patch = 0;
    zmq_version(&major, &minor, &patch);
    std::cout << "tidal " << tidal::kVersion << "\n"
              << "libtorch " << tidal::TorchVersion() << "\n"
              << "zeromq " << major << "." << minor << "." << patch << "\n"
              << "cuda " << (tidal::kBuiltWithCuda ? "compiled in" : "not compiled") << "\n";
    return absl::OkStatus();
  };
}
TIDAL_CLI_COMMAND("version", "Print tidal's version and its libraries' versions", Setup);
}  // namespace
