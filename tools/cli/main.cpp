// Entry point of the `tidal` binary: builds the CLI from the subcommand registry (command.h).
#include <iostream>
#include <memory>

#include "tools/cli/command.h"

namespace tidal::cli {
std::vector<CommandSpec>& CommandRegistry() {
  static std::vector<CommandSpec> registry;
  return registry;
}
}  // namespace tidal::cli

int main(int argc, char** argv) {
  CLI::App app{"tidal: reinforcement-learning training of LLMs"};
  app.require_subcommand(1);
  std::function<absl::Status()> action;
  for (auto& spec : tidal::cli::CommandRegistry()) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.help);
    auto run = spec.setup(*sub);
    sub->callback([&action, run] { action = run; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  absl::Status status;
  try {
    status = action();
  } catch (const std::exception& e) {
    std::cerr << "tidal: internal error: " << e.what() << "\n";
    return 1;
  }
  if (!status.ok()) {
    std::cerr << "tidal: " << status.message() << "\n";
  }
  return tidal::ExitCodeFor(status);
}
