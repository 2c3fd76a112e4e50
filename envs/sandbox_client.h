// SandboxClient: calls a sandbox service (sandbox_server.h) over HTTP. Used by code-running
// environments (builtin:code_exec). One client per thread (not synchronised); cheap to create.
#pragma once

#include <string>

#include "core/status.h"
#include "envs/sandbox.h"

namespace tidal::envs {

class SandboxClient {
 public:
  // url: "http://127.0.0.1:8731"
  explicit SandboxClient(std::string url) : url_(std::move(url)) {}

  // kUnavailable when the service cannot be reached or is saturated (503), kInvalidArgument
  // for a request it rejected (400); otherwise the program's result, whatever the program did.
  absl::StatusOr<SandboxResult> Run(const SandboxRequest& request) const;

 private:
  std::string url_;
};

}  // namespace tidal::envs
