// Entry point of the `tidal` binary: builds the CLI from the subcommand registry (command.h).
#include <iostream>
#include <memory>

#include "absl/strings/str_split.h"
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
    // "model inspect" nests under "model": create each parent once, then the leaf.
    CLI::App* parent = &app;
    std::vector<std::string> words = absl::StrSplit(spec.name, ' ');
    for (size_t i = 0; i + 1 < words.size(); ++i) {
      CLI::App* existing = nullptr;
      for (CLI::App* s : parent->get_subcommands([](CLI::App*) { return true; })) {
        if (s->get_name() == words[i]) existing = s;
      }
      if (!existing) {
        existing = parent->add_subcommand(words[i], words[i] + " commands");
        existing->require_subcommand(1);
      }
      parent = existing;
    }
    CLI::App* sub = parent->add_subcommand(words.back(), spec.help);
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
