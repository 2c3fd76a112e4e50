// `tidal recipe explain [--format text|markdown]`: every recipe key with its type, default,
// allowed values and doc line, straight from the schema table (core/recipe_schema.cpp).
// docs/recipes.md is the markdown output.
#include <iostream>

#include "core/recipe_schema.h"
#include "tools/cli/command.h"

namespace {

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto format = std::make_shared<std::string>("text");
  sub.add_option("--format", *format, "Output format")
      ->check(CLI::IsMember({"text", "markdown"}))
      ->capture_default_str();
  return [format]() -> absl::Status {
    std::cout << tidal::ExplainRecipeSchema(*format == "markdown" ? tidal::ExplainFormat::kMarkdown
                                                                  : tidal::ExplainFormat::kText);
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("recipe explain", "List every recipe key: type, default, allowed values, doc", Setup);

}  // namespace
