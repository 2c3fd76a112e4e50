// The recipe schema: the one table of every recipe key — type, default, allowed values, doc line —
// each entry bound to the Recipe member of the same name.
//
// Contract:
//  - RecipeKeys() is built once (thread-safe static) and never changes; its order is the order
//    of `tidal recipe explain`, of docs/recipes.md and of RecipeToYaml. Keys of one section are
//    contiguous.
//  - The loader (core/recipe.cpp) applies every key's default, then calls `set` for each key the
//    recipe writes; `set` decodes, checks type and range, and stores into the Recipe member, or
//    returns what is wrong (no file position: the loader adds it).
//  - Cross-field rules (tags vs. device count, heads vs. kv_heads, ...) are not here; they are in
//    the loader, after every key is set, and are listed by ExplainRecipeSchema.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "core/recipe.h"

namespace tidal {

enum class RecipeKeyType { kBool, kInt, kFloat, kString, kEnum, kFloatList, kMap };

// The value the loader hands a key: the YAML node, and for kMap keys the merged map as JSON.
struct RecipeKeyInput {
  YAML::Node yaml;
  nlohmann::json json;
};

// What is wrong with a value. `mark` points inside the value (a list element) when set.
struct RecipeKeyProblem {
  std::string message;
  std::optional<YAML::Mark> mark;
};

struct RecipeKey {
  std::string path;          // "train.lr"
  RecipeKeyType type;
  std::string type_name;     // "float", "int", "bool", "string", "enum", "[float, float]", "map"
  std::string default_text;  // YAML spelling of the default; "" when required
  std::string doc;           // one line
  bool required = false;
  std::string constraint_text;       // "> 0", "in [0, 65535]", "one of: grpo, dapo"; "" if none
  std::vector<std::string> choices;  // enum spellings

  std::function<void(Recipe&)> set_default;
  std::function<std::optional<RecipeKeyProblem>(const RecipeKeyInput&, Recipe&)> set;
  std::function<void(const Recipe&, YAML::Emitter&)> emit;  // the value only
};

// A map of keys ("model", "model.size"): a doc line for explain and the docs page.
struct RecipeSection {
  std::string path;
  std::string doc;
};

const std::vector<RecipeKey>& RecipeKeys();
const std::vector<RecipeSection>& RecipeSections();
const RecipeKey* FindRecipeKey(std::string_view path);
const RecipeSection* FindRecipeSection(std::string_view path);
// Human-readable cross-field rules the loader enforces (for explain / docs).
const std::vector<std::string>& RecipeCrossFieldRules();

enum class ExplainFormat { kText, kMarkdown };
// Every key: path, type, default, allowed values, doc line.
std::string ExplainRecipeSchema(ExplainFormat format);

// Edit distance counting insertions, deletions, substitutions and adjacent transpositions.
size_t EditDistance(std::string_view a, std::string_view b);
// The candidate closest to `word` if it is close enough to be a typo of it; "" otherwise.
std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates);

// Shortest decimal spelling that reads back as the same double ("0.0001", "1e-30", "2").
std::string FormatRecipeFloat(double value);

}  // namespace tidal
