// `tidal validate RECIPE [key.path=value ...]`: loads the recipe exactly as `tidal run` would
// (includes, overrides, schema, cross-field rules) and reports every problem at once.
#include <iostream>

#include "absl/strings/str_split.h"
#include "core/recipe.h"
#include "scheduler/recipe_fit.h"
#include "tools/cli/command.h"

namespace {

struct Args {
  std::string recipe;
  std::vector<std::string> overrides;
  bool print = false;
};

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto args = std::make_shared<Args>();
  sub.add_option("recipe", args->recipe, "Recipe YAML file")->required();
  sub.add_option("overrides", args->overrides, "Overrides key.path=value (value parsed as YAML)");
  sub.add_flag("--print", args->print, "On success, also print the resolved recipe (every key) as YAML");
  return [args]() -> absl::Status {
    absl::StatusOr<tidal::Recipe> recipe = tidal::LoadRecipe(args->recipe, args->overrides);
    if (!recipe.ok()) {
      if (recipe.status().code() != absl::StatusCode::kInvalidArgument) return recipe.status();
      // One line per problem, then a one-line summary (main prefixes it with "tidal: ").
      std::vector<std::string> lines = absl::StrSplit(recipe.status().message(), '\n');
      for (const std::string& line : lines) std::cerr << line << "\n";
      return absl::InvalidArgumentError(absl::StrCat(args->recipe, ": invalid recipe (", lines.size(),
                                                     lines.size() == 1 ? " error)" : " errors)"));
    }
    // Sizes that cannot work on this machine (the same check `tidal run` makes before it starts).
    TIDAL_RETURN_IF_ERROR(tidal::scheduler::CheckRecipeFitsHere(*recipe));
    if (args->print) std::cout << tidal::RecipeToYaml(*recipe);
    std::cout << "ok: " << recipe->name << "\n";
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("validate", "Check a recipe (and overrides key.path=value) without running it", Setup);

}  // namespace
