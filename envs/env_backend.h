// EnvBackend: where an Environment's calls go. Two implementations: InProcessBackend calls the
// plugin's C table in this process (a watchdog thread enforces the time limit), and
// IsolatedBackend forwards each call to a tidal-env-worker process over a socket.
//
// Contract: one thread at a time per backend. Each call returns the plugin's reply text exactly
// as the plugin produced it (Environment parses and validates it), or an error whose message
// starts with "env plugin '<plugin>'".
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "envs/environment.h"

namespace tidal::envs {

class EnvBackend {
 public:
  virtual ~EnvBackend() = default;
  virtual absl::StatusOr<std::string> Reset(uint64_t seed, const std::string& options_json) = 0;
  virtual absl::StatusOr<std::string> Step(const std::string& model_turn) = 0;
  virtual absl::StatusOr<std::string> Score(const std::string& hidden_json,
                                            const std::string& response) = 0;
};

// Loads spec.plugin here and creates one instance from spec.args.
absl::StatusOr<std::unique_ptr<EnvBackend>> OpenInProcessBackend(const EnvSpec& spec);
// Starts an env-worker process that loads spec.plugin and creates the instance there.
absl::StatusOr<std::unique_ptr<EnvBackend>> OpenIsolatedBackend(const EnvSpec& spec);

// The prefix every error carries: "env plugin '<plugin>'".
std::string PluginErrorPrefix(const std::string& plugin);

}  // namespace tidal::envs
