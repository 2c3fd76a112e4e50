// `tidal run RECIPE [key.path=value ...]`: runs a recipe end to end (the controller process; it
// starts the workers itself). `tidal run --resume RUN_DIR [key.path=value ...]` continues a run
// from its own resolved recipe (RUN_DIR/recipe.yaml) and newest checkpoint; overrides still apply
// (e.g. train.steps=1200 to train further). An existing run directory is refused unless resuming
// or --overwrite is given. Ctrl-C / SIGTERM wind the run down cleanly: in-flight work is aborted
// and accounted, the last trained step is checkpointed and exported to final/, workers are
// stopped, the summary is printed. Progress goes to stdout, logs to stderr.
// `--launcher slurm` (or `launch: slurm`) outside a Slurm allocation writes an sbatch script into
// the run directory and submits it instead (scheduler/slurm.h); inside one, it runs here and
// starts the workers with srun.
#include <signal.h>
#include <stdio.h>

#include <iostream>

#include "scheduler/controller.h"
#include "scheduler/launcher.h"
#include "scheduler/slurm.h"
#include "scheduler/recipe_fit.h"
#include "tools/cli/command.h"

namespace {

void OnSignal(int) { tidal::scheduler::RequestStop(); }

// The overrides that make RUN_DIR's own resolved recipe continue in RUN_DIR.
absl::StatusOr<std::vector<std::string>> ResumeOverrides(const std::string& run_dir) {
  TIDAL_ASSIGN_OR_RETURN(tidal::Recipe saved, tidal::LoadRecipe(run_dir + "/recipe.yaml", {}));
  std::vector<std::string> o = {"run_dir=" + run_dir, "checkpoint.resume=true"};
  // A checkpoint dir derived from the old run_dir follows the run (RUN_DIR may have moved, or
  // be spelled from another working directory).
  if (saved.checkpoint.dir == saved.run_dir + "/checkpoints") o.push_back("checkpoint.dir=" + run_dir + "/checkpoints");
  return o;
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  struct Args {
    std::string recipe;
    std::string resume;
    std::vector<std::string> overrides;
    bool quiet = false;
    std::string launcher;
    bool overwrite = false;
  };
  auto args = std::make_shared<Args>();
  sub.add_option("recipe", args->recipe, "Recipe YAML file (not with --resume)");
  sub.add_option("overrides", args->overrides, "Overrides: key.path=value (value parsed as YAML)");
  sub.add_option("--resume", args->resume, "Continue the run in RUN_DIR from its recipe.yaml and newest checkpoint");
  sub.add_flag("--overwrite", args->overwrite, "Replace an existing run in the recipe's run_dir");
  sub.add_flag("--quiet", args->quiet, "No progress line");
  sub.add_option("--launcher", args->launcher, "How workers start: local, slurm or external (= the recipe's `launch`)");
  return [args]() -> absl::Status {
    std::string recipe_path = args->recipe;
    std::vector<std::string> overrides = args->overrides;
    if (!args->resume.empty()) {
      // `tidal run --resume DIR a.b=c`: CLI11 puts the first override in the recipe slot.
      if (!recipe_path.empty()) {
        if (recipe_path.find('=') == std::string::npos) {
          return absl::InvalidArgumentError("--resume takes the run directory instead of a recipe file");
        }
        overrides.insert(overrides.begin(), recipe_path);
      }
      while (args->resume.size() > 1 && args->resume.back() == '/') args->resume.pop_back();
      TIDAL_ASSIGN_OR_RETURN(std::vector<std::string> resume, ResumeOverrides(args->resume));
      overrides.insert(overrides.end(), resume.begin(), resume.end());
      recipe_path = args->resume + "/recipe.yaml";
    } else if (recipe_path.empty()) {
      return absl::InvalidArgumentError("run: give a recipe file, or --resume RUN_DIR");
    }
    if (!args->launcher.empty()) overrides.push_back("launch=" + args->launcher);
    TIDAL_ASSIGN_OR_RETURN(tidal::Recipe recipe, tidal::LoadRecipe(recipe_path, overrides));
    if (recipe.launch == tidal::LaunchKind::kSlurm && !tidal::scheduler::InSlurmAllocation()) {
      TIDAL_ASSIGN_OR_RETURN(std::string script,
                             tidal::scheduler::WriteSbatchScript(recipe, tidal::scheduler::SelfExecutable()));
      TIDAL_ASSIGN_OR_RETURN(std::string job, tidal::scheduler::SubmitSbatch(script));
      std::cout << "submitted Slurm job " << job << " (" << script << "); the controller's output goes to "
                << recipe.run_dir << "/logs/slurm-" << job << ".out, the summary to " << recipe.run_dir
                << "/summary.json" << std::endl;
      return absl::OkStatus();
    }
    // Sizes that cannot work fail here, with the key to change, before any worker starts.
    TIDAL_RETURN_IF_ERROR(tidal::scheduler::CheckRecipeFitsHere(recipe));
    struct sigaction sa = {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, nullptr, _IONBF, 0);  // progress lines show (and survive a kill) at once
    tidal::scheduler::RunOptions options;
    options.progress = !args->quiet;
    options.overwrite = args->overwrite;
    TIDAL_ASSIGN_OR_RETURN(tidal::scheduler::RunSummary summary,
                           tidal::scheduler::RunController(recipe, options));
    if (summary.prompts_unaccounted != 0) {
      return absl::InternalError(absl::StrCat(summary.prompts_unaccounted, " prompts unaccounted"));
    }
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("run", "Run a recipe (or --resume RUN_DIR): controller + one worker per device slot", Setup);

}  // namespace
