// `tidal run RECIPE [key.path=value ...]`: runs a recipe end to end (the controller process; it
// starts the workers itself). Ctrl-C / SIGTERM wind the run down cleanly: in-flight work is
// aborted and accounted, workers are stopped, the summary is printed.
// `--launcher slurm` (or `launch: slurm`) outside a Slurm allocation writes an sbatch script into
// the run directory and submits it instead (scheduler/slurm.h); inside one, it runs here and
// starts the workers with srun.
#include <signal.h>

#include <iostream>

#include "scheduler/controller.h"
#include "scheduler/launcher.h"
#include "scheduler/slurm.h"
#include "tools/cli/command.h"

namespace {

void OnSignal(int) { tidal::scheduler::RequestStop(); }

std::function<absl::Status()> Setup(CLI::App& sub) {
  struct Args {
    std::string recipe;
    std::vector<std::string> overrides;
    bool quiet = false;
    std::string launcher;
  };
  auto args = std::make_shared<Args>();
  sub.add_option("recipe", args->recipe, "Recipe YAML file")->required();
  sub.add_option("overrides", args->overrides, "Overrides: key.path=value (value parsed as YAML)");
  sub.add_flag("--quiet", args->quiet, "No progress line");
  sub.add_option("--launcher", args->launcher, "How workers start: local, slurm or external (= the recipe's `launch`)");
  return [args]() -> absl::Status {
    std::vector<std::string> overrides = args->overrides;
    if (!args->launcher.empty()) overrides.push_back("launch=" + args->launcher);
    TIDAL_ASSIGN_OR_RETURN(tidal::Recipe recipe, tidal::LoadRecipe(args->recipe, overrides));
    if (recipe.launch == tidal::LaunchKind::kSlurm && !tidal::scheduler::InSlurmAllocation()) {
      TIDAL_ASSIGN_OR_RETURN(std::string script,
                             tidal::scheduler::WriteSbatchScript(recipe, tidal::scheduler::SelfExecutable()));
      TIDAL_ASSIGN_OR_RETURN(std::string job, tidal::scheduler::SubmitSbatch(script));
      std::cout << "submitted Slurm job " << job << " (" << script << "); the controller's output goes to "
                << recipe.run_dir << "/logs/slurm-" << job << ".out, the summary to " << recipe.run_dir
                << "/summary.json" << std::endl;
      return absl::OkStatus();
    }
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
