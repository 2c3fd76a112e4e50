// The untyped stage of recipe loading: YAML files -> one merged tree whose every node remembers
// the file, line and column it came from.
//
// Contract (used only by the loader in core/recipe.cpp and by tests):
//  - ReadRecipeSource / ParseRecipeSource parse one recipe, follow its top-level `include:`
//    (a path or a list of paths, relative to the including file; nested; cycles are errors) and
//    deep-merge: maps merge key by key, anything else in the including file replaces the
//    included value. A null value over a map leaves the map as it is.
//  - ApplyOverride merges one "key.path=value" on top the same way; its nodes carry the
//    pseudo-file "<override>".
//  - Problems are appended to `issues` and reading goes on, so the caller reports them all.
//  - yaml-cpp marks are 0-based; SourceLoc is 1-based (line 0 = no position known).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "core/status.h"

namespace tidal {

struct SourceLoc {
  std::string file;
  int line = 0;  // 1-based; 0 = the whole file (no position)
  int column = 0;

  static SourceLoc FromMark(const std::string& file, const YAML::Mark& mark);
  std::string ToString() const;  // "file:line:col" or "file"
};

// One problem in a recipe; `path` is the dotted key path ("" if the problem is not about a key).
struct RecipeIssue {
  SourceLoc loc;
  std::string path;
  std::string message;

  std::string ToString() const;  // "file:line:col: `path`: message"
};

// All issues as one InvalidArgumentError, one per line; OkStatus if none. Order: `top_file`
// first, then the other files in order of first appearance, overrides last; by position within
// a file, issues without a position (missing keys) after the positioned ones.
absl::Status IssuesToStatus(std::vector<RecipeIssue> issues, const std::string& top_file = "");

struct SourceNode {
  std::string key;     // key in the parent map; "" for the root
  SourceLoc key_loc;   // where that key is written
  SourceLoc loc;       // where the value starts
  std::vector<SourceNode> children;  // map entries in first-written order (maps only)

  // The value; for maps `children` is the authoritative (merged) view. Held through a pointer
  // because YAML::Node's operator= writes through to the shared node: moving SourceNodes that
  // held Nodes by value would rewrite the parsed documents.
  const YAML::Node& yaml() const { return *yaml_; }
  void SetYaml(YAML::Node n) { yaml_ = std::make_shared<const YAML::Node>(std::move(n)); }

  bool IsMap() const { return yaml().IsMap(); }
  bool IsNull() const { return !yaml().IsDefined() || yaml().IsNull(); }
  const SourceNode* Find(const std::string& child_key) const;
  SourceNode* Find(const std::string& child_key);

 private:
  std::shared_ptr<const YAML::Node> yaml_ = std::make_shared<const YAML::Node>();
};

// `path` as written is what messages show; `included` collects each included file.
SourceNode ReadRecipeSource(const std::string& path, std::vector<RecipeIssue>* issues,
                            std::vector<std::string>* included);
// From text; `source_name` is the file name in messages, includes resolve against `base_dir`.
SourceNode ParseRecipeSource(const std::string& yaml_text, const std::string& source_name,
                             const std::string& base_dir, std::vector<RecipeIssue>* issues,
                             std::vector<std::string>* included);

// `over` wins: maps merge recursively, everything else replaces (null over a map is a no-op).
void MergeSource(SourceNode* base, SourceNode over);

// Parses "key.path=value" (value as YAML) and sets that key of `root` to it: the old value is
// replaced whole, maps included; an empty value unsets the key (its default applies).
void ApplyOverride(const std::string& override_text, SourceNode* root, std::vector<RecipeIssue>* issues);

// `rel` resolved against the folder of `file` (the recipe file that wrote it), as `include:`
// paths are, and made absolute; when `file` is not a readable file (an override), against the
// working directory. An absolute `rel` is only normalised.
std::string ResolveFromFile(const std::string& file, const std::string& rel);

}  // namespace tidal
