// `tidal run RECIPE [key.path=value ...]`: runs a recipe end to end (the controller process; it
// starts the workers itself). Ctrl-C / SIGTERM wind the run down cleanly: in-flight work is
// aborted and accounted, workers are stopped, the summary is printed.
#include <signal.h>

#include <iostream>

#include "scheduler/controller.h"
#include "scheduler/recipe_fit.h"
#include "tools/cli/command.h"

namespace {

void OnSignal(int) { tidal::scheduler::RequestStop(); }

std::function<absl::Status()> Setup(CLI::App& sub) {
  struct Args {
    std::string recipe;
    std::vector<std::string> overrides;
    bool quiet = false;
  };
  auto args = std::make_shared<Args>();
  sub.add_option("recipe", args->recipe, "Recipe YAML file")->required();
  sub.add_option("overrides", args->overrides, "Overrides: key.path=value (value parsed as YAML)");
  sub.add_flag("--quiet", args->quiet, "No progress line");
  return [args]() -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(tidal::Recipe recipe, tidal::LoadRecipe(args->recipe, args->overrides));
    // Sizes that cannot work fail here, with the key to change, before any worker starts.
    TIDAL_RETURN_IF_ERROR(tidal::scheduler::CheckRecipeFitsHere(recipe));
    struct sigaction sa = {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    tidal::scheduler::RunOptions options;
    options.progress = !args->quiet;
    TIDAL_ASSIGN_OR_RETURN(tidal::scheduler::RunSummary summary,
                           tidal::scheduler::RunController(recipe, options));
    if (summary.prompts_unaccounted != 0) {
      return absl::InternalError(absl::StrCat(summary.prompts_unaccounted, " prompts unaccounted"));
    }
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("run", "Run a recipe: controller + one worker per device slot", Setup);

}  // namespace
