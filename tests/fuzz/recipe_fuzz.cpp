// libFuzzer target: the recipe loader (YAML parse, `include:`, overrides, schema, cross-field
// rules) on arbitrary text. The input's first line, when it starts with "#!", holds overrides
// separated by spaces, so the override parser is fuzzed too. Any result is fine; a crash, a
// sanitizer report or an exception escaping LoadRecipeFromString is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "core/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  if (text.rfind("#!", 0) == 0) {
    const size_t eol = text.find('\n');
    for (absl::string_view o : absl::StrSplit(text.substr(2, eol == std::string::npos ? std::string::npos : eol - 2),
                                              ' ', absl::SkipEmpty())) {
      overrides.emplace_back(o);
    }
  }
  // base_dir "/nonexistent": an `include:` resolves nowhere, so inputs cannot read the host's files.
  absl::StatusOr<tidal::Recipe> r = tidal::LoadRecipeFromString(text, "fuzz.yaml", overrides, "/nonexistent");
  if (r.ok()) {
    // What was accepted must round-trip (RecipeToYaml's contract).
    absl::StatusOr<tidal::Recipe> again = tidal::LoadRecipeFromString(tidal::RecipeToYaml(*r), "again.yaml");
    if (!again.ok()) __builtin_trap();
  }
  return 0;
}
