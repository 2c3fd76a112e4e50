#include "core/recipe_source.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tidal {
namespace {

constexpr char kOverrideFile[] = "<override>";

std::string JoinPath(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : absl::StrCat(prefix, ".", key);
}

// Builds the located tree of one parsed document. Duplicate keys are reported (yaml-cpp keeps
// both silently) and the later one wins, as in most YAML loaders.
SourceNode BuildNode(const YAML::Node& yaml, const std::string& file, const std::string& path,
                     std::vector<RecipeIssue>* issues) {
  SourceNode node;
  node.SetYaml(yaml);
  node.loc = SourceLoc::FromMark(file, yaml.Mark());
  if (!yaml.IsMap()) return node;
  for (auto it = yaml.begin(); it != yaml.end(); ++it) {
    SourceLoc key_loc = SourceLoc::FromMark(file, it->first.Mark());
    if (!it->first.IsScalar()) {
      issues->push_back({key_loc, path, "map keys must be plain names"});
      continue;
    }
    std::string key = it->first.Scalar();
    SourceNode child = BuildNode(it->second, file, JoinPath(path, key), issues);
    child.key = key;
    child.key_loc = key_loc;
    // An empty value ("key:" then a newline) is marked at the next token; point at the key.
    if (child.IsNull()) child.loc = key_loc;
    if (SourceNode* first = node.Find(key)) {
      issues->push_back({key_loc, JoinPath(path, key),
                         absl::StrCat("duplicate key (first written at line ", first->key_loc.line, ")")});
      *first = std::move(child);
      continue;
    }
    node.children.push_back(std::move(child));
  }
  return node;
}

std::string ReadFile(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *ok = false;
    return {};
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *ok = true;
  return ss.str();
}

// Path helpers on strings. (Not std::filesystem: the torch wheel's libtorch.so exports its own
// copies of std::filesystem functions and some of them crash when called from our code.)
std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Drops "." segments and folds "dir/.." so messages show short paths.
std::string Normalize(const std::string& path) {
  bool absolute = !path.empty() && path[0] == '/';
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == ".." && !out.empty() && out.back() != "..") {
      out.pop_back();
      continue;
    }
    if (part == ".." && absolute) continue;
    out.emplace_back(part);
  }
  std::string joined = absl::StrJoin(out, "/");
  if (absolute) return "/" + joined;
  return joined.empty() ? "." : joined;
}

std::string ResolveRelative(const std::string& base_dir, const std::string& rel) {
  if (rel.empty() || rel[0] == '/' || base_dir.empty()) return Normalize(rel);
  return Normalize(absl::StrCat(base_dir, "/", rel));
}

// Identity of a file for cycle detection: its real path when it exists.
std::string CanonicalKey(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) != nullptr) return buf;
  return Normalize(path);
}

class SourceReader {
 public:
  SourceReader(std::vector<RecipeIssue>* issues, std::vector<std::string>* included)
      : issues_(issues), included_(included) {}

  // `display` is the file name used in messages; `base_dir` resolves its includes.
  SourceNode ParseText(const std::string& text, const std::string& display, const std::string& base_dir) {
    YAML::Node doc;
    try {
      doc = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
      issues_->push_back({SourceLoc::FromMark(display, e.mark), "", absl::StrCat("YAML syntax error: ", e.msg)});
      return EmptyRoot(display);
    }
    if (!doc.IsDefined() || doc.IsNull()) return EmptyRoot(display);
    if (!doc.IsMap()) {
      issues_->push_back({SourceLoc::FromMark(display, doc.Mark()), "",
                          "a recipe must be a map of keys (like `name: my-run`)"});
      return EmptyRoot(display);
    }
    SourceNode root = BuildNode(doc, display, "", issues_);
    root.loc = SourceLoc{display, 0, 0};
    return ResolveIncludes(std::move(root), display, base_dir);
  }

  SourceNode ReadFileAt(const std::string& path, const SourceLoc& included_from) {
    bool ok = false;
    std::string text = ReadFile(path, &ok);
    if (!ok) {
      if (included_from.file.empty()) {
        issues_->push_back({SourceLoc{path, 0, 0}, "", "cannot read the recipe file"});
      } else {
        issues_->push_back({included_from, "include", absl::StrCat("cannot read included file ", path)});
      }
      return EmptyRoot(path);
    }
    std::string key = CanonicalKey(path);
    stack_.push_back(key);
    std::string base_dir = DirName(path);
    SourceNode root = ParseText(text, path, base_dir);
    stack_.pop_back();
    return root;
  }

  void PushStack(const std::string& key) { stack_.push_back(key); }

 private:
  static SourceNode EmptyRoot(const std::string& file) {
    SourceNode root;
    root.SetYaml(YAML::Node(YAML::NodeType::Map));
    root.loc = SourceLoc{file, 0, 0};
    return root;
  }

  SourceNode ResolveIncludes(SourceNode root, const std::string& display, const std::string& base_dir) {
    auto it = std::find_if(root.children.begin(), root.children.end(),
                           [](const SourceNode& c) { return c.key == "include"; });
    if (it == root.children.end()) return root;
    SourceNode include = std::move(*it);
    root.children.erase(it);

    // Collect (path, location) of each include, in order.
    std::vector<std::pair<std::string, SourceLoc>> paths;
    auto add = [&](const YAML::Node& n, const SourceLoc& loc) {
      if (!n.IsScalar() || n.Scalar().empty()) {
        issues_->push_back({loc, "include", "expected a file path (or a list of file paths)"});
        return;
      }
      paths.emplace_back(n.Scalar(), loc);
    };
    if (include.yaml().IsSequence()) {
      for (const YAML::Node& item : include.yaml()) add(item, SourceLoc::FromMark(display, item.Mark()));
    } else {
      add(include.yaml(), include.loc);
    }

    SourceNode merged = EmptyRoot(display);
    for (const auto& [rel, loc] : paths) {
      std::string resolved = ResolveRelative(base_dir, rel);
      std::string key = CanonicalKey(resolved);
      if (std::find(stack_.begin(), stack_.end(), key) != stack_.end()) {
        std::vector<std::string> chain(stack_.begin(), stack_.end());
        chain.push_back(key);
        issues_->push_back({loc, "include", absl::StrCat("include cycle: ", absl::StrJoin(chain, " -> "))});
        continue;
      }
      included_->push_back(resolved);
      MergeSource(&merged, ReadFileAt(resolved, loc));
    }
    MergeSource(&merged, std::move(root));
    merged.loc = SourceLoc{display, 0, 0};
    return merged;
  }

  std::vector<RecipeIssue>* issues_;
  std::vector<std::string>* included_;
  std::vector<std::string> stack_;  // canonical paths of the files being read (cycle detection)
};

}  // namespace

SourceLoc SourceLoc::FromMark(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return SourceLoc{file, 0, 0};
  return SourceLoc{file, mark.line + 1, mark.column + 1};
}

std::string SourceLoc::ToString() const {
  if (line <= 0) return file;
  return absl::StrCat(file, ":", line, ":", column);
}

std::string RecipeIssue::ToString() const {
  std::string out = loc.ToString();
  if (!path.empty()) absl::StrAppend(&out, ": `", path, "`");
  absl::StrAppend(&out, ": ", message);
  return out;
}

absl::Status IssuesToStatus(std::vector<RecipeIssue> issues, const std::string& top_file) {
  if (issues.empty()) return absl::OkStatus();
  std::vector<std::string> files;
  if (!top_file.empty()) files.push_back(top_file);
  for (const RecipeIssue& i : issues) {
    if (i.loc.file != kOverrideFile && std::find(files.begin(), files.end(), i.loc.file) == files.end()) {
      files.push_back(i.loc.file);
    }
  }
  auto rank = [&](const RecipeIssue& i) {
    size_t f = i.loc.file == kOverrideFile
                   ? files.size()
                   : static_cast<size_t>(std::find(files.begin(), files.end(), i.loc.file) - files.begin());
    int line = i.loc.line > 0 ? i.loc.line : (1 << 30);
    return std::make_tuple(f, line, i.loc.column);
  };
  std::stable_sort(issues.begin(), issues.end(),
                   [&](const RecipeIssue& a, const RecipeIssue& b) { return rank(a) < rank(b); });
  std::vector<std::string> lines;
  for (const RecipeIssue& i : issues) {
    std::string line = i.ToString();
    if (std::find(lines.begin(), lines.end(), line) == lines.end()) lines.push_back(std::move(line));
  }
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

const SourceNode* SourceNode::Find(const std::string& child_key) const {
  for (const SourceNode& c : children) {
    if (c.key == child_key) return &c;
  }
  return nullptr;
}

SourceNode* SourceNode::Find(const std::string& child_key) {
  for (SourceNode& c : children) {
    if (c.key == child_key) return &c;
  }
  return nullptr;
}

void MergeSource(SourceNode* base, SourceNode over) {
  if (base->IsMap() && over.IsNull()) return;
  if (base->IsMap() && over.IsMap()) {
    for (SourceNode& child : over.children) {
      if (SourceNode* existing = base->Find(child.key)) {
        SourceLoc key_loc = child.key_loc;
        MergeSource(existing, std::move(child));
        existing->key_loc = key_loc;  // the winning file's position
      } else {
        base->children.push_back(std::move(child));
      }
    }
    return;
  }
  std::string key = base->key;
  SourceLoc key_loc = base->key_loc;
  *base = std::move(over);
  if (base->key.empty()) {
    base->key = key;
    base->key_loc = key_loc;
  }
}

SourceNode ReadRecipeSource(const std::string& path, std::vector<RecipeIssue>* issues,
                            std::vector<std::string>* included) {
  SourceReader reader(issues, included);
  return reader.ReadFileAt(path, SourceLoc{});
}

SourceNode ParseRecipeSource(const std::string& yaml_text, const std::string& source_name,
                             const std::string& base_dir, std::vector<RecipeIssue>* issues,
                             std::vector<std::string>* included) {
  SourceReader reader(issues, included);
  reader.PushStack(CanonicalKey(source_name));
  return reader.ParseText(yaml_text, source_name, base_dir);
}

void ApplyOverride(const std::string& override_text, SourceNode* root, std::vector<RecipeIssue>* issues) {
  const SourceLoc loc{kOverrideFile, 0, 0};
  size_t eq = override_text.find('=');
  if (eq == std::string::npos) {
    issues->push_back({loc, "", absl::StrCat("`", override_text, "` is not of the form key.path=value")});
    return;
  }
  std::string path(absl::StripAsciiWhitespace(override_text.substr(0, eq)));
  std::string value_text = override_text.substr(eq + 1);
  std::vector<std::string> keys = absl::StrSplit(path, '.');
  for (const std::string& k : keys) {
    if (k.empty()) {
      issues->push_back({loc, path, absl::StrCat("`", override_text, "`: empty key name in the key path")});
      return;
    }
  }
  if (keys.front() == "include") {
    issues->push_back({loc, path, "`include` cannot be set from the command line"});
    return;
  }
  YAML::Node value;
  try {
    value = YAML::Load(value_text);
  } catch (const YAML::ParserException& e) {
    issues->push_back({loc, path, absl::StrCat("value `", value_text, "` is not valid YAML: ", e.msg)});
    return;
  }
  // An empty value ("train.lr=") means "unset": the key takes its default.
  SourceNode leaf;
  leaf.SetYaml(value);
  leaf.loc = loc;
  leaf.key = keys.back();
  leaf.key_loc = loc;
  if (value.IsMap()) {
    SourceNode built = BuildNode(value, kOverrideFile, path, issues);
    leaf.children = std::move(built.children);
    std::function<void(SourceNode&)> relocate = [&](SourceNode& n) {
      n.loc = loc;
      n.key_loc = loc;
      for (SourceNode& c : n.children) relocate(c);
    };
    relocate(leaf);
  }
  // Walk (creating maps) down to the key's parent, then set the key: an override replaces the
  // key's whole value, maps included (`env.args={}` empties the map; `env.args.k=v` sets one
  // entry), unlike an include, whose maps merge.
  SourceNode* at = root;
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    SourceNode* child = at->Find(keys[i]);
    if (child == nullptr || !child->IsMap()) {
      SourceNode parent;
      parent.SetYaml(YAML::Node(YAML::NodeType::Map));
      parent.loc = loc;
      parent.key = keys[i];
      parent.key_loc = loc;
      if (child != nullptr) {
        *child = std::move(parent);
      } else {
        at->children.push_back(std::move(parent));
        child = &at->children.back();
      }
    }
    at = child;
  }
  if (SourceNode* existing = at->Find(keys.back())) {
    *existing = std::move(leaf);
  } else {
    at->children.push_back(std::move(leaf));
  }
}

std::string ResolveFromFile(const std::string& file, const std::string& rel) {
  std::string path = rel;
  if (path.empty() || path[0] != '/') {
    struct stat st;  // only a real file (not "<override>") anchors a relative path
    const bool is_file = ::stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode);
    path = ResolveRelative(is_file ? DirName(file) : "", rel);
    if (path.empty() || path[0] != '/') {
      char cwd[PATH_MAX];
      if (::getcwd(cwd, sizeof cwd) != nullptr) path = Normalize(absl::StrCat(cwd, "/", path));
    }
  }
  return Normalize(path);
}

}  // namespace tidal
