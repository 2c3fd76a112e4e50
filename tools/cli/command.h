// Subcommand registry of the `tidal` CLI.
//
// Each subcommand lives in its own tools/cli/cmd_<name>.cpp and registers itself with
// TIDAL_CLI_COMMAND at static-initialisation time (these objects are linked straight into the
// executable, so the registrations are never dropped). main() builds the CLI11 app from the
// registry, parses, and maps the returned Status to the exit code: 0 ok, 2 user error,
// 1 internal error (tidal::ExitCodeFor).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"

namespace tidal::cli {

// Adds the subcommand's options to `sub` and returns the action to run when it is chosen.
using CommandSetup = std::function<std::function<absl::Status()>(CLI::App& sub)>;

struct CommandSpec {
  std::string name;  // "version", or nested: "model inspect"
  std::string help;
  CommandSetup setup;
};

std::vector<CommandSpec>& CommandRegistry();

// The whole CLI from the registry ("model inspect" nests under "model"), plus --version; a chosen
// subcommand stores its action in `action`, which must outlive `app`'s parse. main() and
// `tidal completion` (which walks the tree) use it.
void BuildCommandTree(CLI::App& app, std::function<absl::Status()>& action);

struct CommandRegistrar {
  explicit CommandRegistrar(CommandSpec spec) { CommandRegistry().push_back(std::move(spec)); }
};

}  // namespace tidal::cli

#define TIDAL_CLI_CONCAT_INNER_(a, b) a##b
#define TIDAL_CLI_CONCAT_(a, b) TIDAL_CLI_CONCAT_INNER_(a, b)
#define TIDAL_CLI_COMMAND(name, help, setup_fn)                                          \
  static ::tidal::cli::CommandRegistrar TIDAL_CLI_CONCAT_(tidal_cli_registrar_, __LINE__)( \
      ::tidal::cli::CommandSpec{name, help, setup_fn})
