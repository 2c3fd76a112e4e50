// Entry point of the `tidal` binary: builds the CLI from the subcommand registry (command.h).
#include <iostream>
#include <memory>

#include "absl/strings/str_split.h"
#include "core/version.h"
#include "tools/cli/command.h"

namespace tidal::cli {
std::vector<CommandSpec>& CommandRegistry() {
  static std::vector<CommandSpec> registry;
  return registry;
}

void BuildCommandTree(CLI::App& app, std::function<absl::Status()>& action) {
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tidal ") + tidal::kVersion);
  for (auto& spec : CommandRegistry()) {
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
}
}  // namespace tidal::cli

int main(int argc, char** argv) {
  CLI::App app{"tidal: reinforcement-learning training of LLMs"};
  std::function<absl::Status()> action;
  tidal::cli::BuildCommandTree(app, action);
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
