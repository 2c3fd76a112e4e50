// Running a benchmark's baseline script (HF generate, HF tokenizers, PyTorch FSDP2) from the CLI:
// the one place that starts a shell command, collects its stdout and finds the JSON it reports.
// Each bench keeps its own command line and error wording.
//
// Contract: blocking; stderr is not captured (it goes to the CLI's stderr). Thread-compatible.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace tidal::cli {

struct CommandOutput {
  int exit_code = -1;  // pclose's status
  std::string out;     // everything printed on stdout
};

// Runs `cmd` through the shell to completion. An error only when it cannot be started.
absl::StatusOr<CommandOutput> RunCommand(const std::string& cmd);

// The JSON value on the last non-empty line of `out` (baseline scripts print one compact line,
// libraries may log above it), or nullopt.
std::optional<nlohmann::json> LastJsonLine(const std::string& out);

}  // namespace tidal::cli
