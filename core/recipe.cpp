// Recipe loading: source tree (core/recipe_source.h) -> typed Recipe through the schema table
// (core/recipe_schema.h), then the cross-field checks that no single key can make.
#include "core/recipe.h"

#include <charconv>
#include <map>
#include <regex>
#include <set>

#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "core/recipe_schema.h"
#include "core/recipe_source.h"

namespace tidal {
namespace {

// Not std::filesystem: the torch wheel's libtorch.so exports crashing copies of its functions.
bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string JoinPath(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : absl::StrCat(prefix, ".", key);
}

std::string ParentOf(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? "" : path.substr(0, dot);
}

std::string LastOf(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// A YAML scalar as JSON, following the YAML 1.2 core schema: quoted scalars stay strings.
nlohmann::json ScalarToJson(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  static const std::regex kInt(R"([-+]?[0-9]+)");
  static const std::regex kFloat(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (std::regex_match(s, kInt)) {
    int64_t v = 0;
    if (absl::SimpleAtoi(s, &v)) return v;
  }
  if (std::regex_match(s, kFloat)) {
    double v = 0;
    if (absl::SimpleAtod(s, &v)) return v;
  }
  return s;
}

nlohmann::json YamlToJson(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return nullptr;
  if (n.IsScalar()) return ScalarToJson(n);
  if (n.IsSequence()) {
    nlohmann::json arr = nlohmann::json::array();
    for (const YAML::Node& item : n) arr.push_back(YamlToJson(item));
    return arr;
  }
  nlohmann::json obj = nlohmann::json::object();
  for (auto it = n.begin(); it != n.end(); ++it) obj[it->first.Scalar()] = YamlToJson(it->second);
  return obj;
}

// The merged view of a map (children) rather than any one file's YAML.
nlohmann::json SourceToJson(const SourceNode& node) {
  if (node.IsNull() && node.children.empty()) return nullptr;
  if (!node.IsMap()) return YamlToJson(node.yaml());
  nlohmann::json obj = nlohmann::json::object();
  for (const SourceNode& c : node.children) obj[c.key] = SourceToJson(c);
  return obj;
}

// Names directly under `prefix` (keys and sections), for suggestions.
std::vector<std::string> ChildNames(const std::string& prefix) {
  std::vector<std::string> names;
  if (prefix.empty()) names.push_back("include");
  for (const RecipeKey& k : RecipeKeys()) {
    if (!prefix.empty() && k.path.rfind(prefix + ".", 0) != 0) continue;
    std::string rest = prefix.empty() ? k.path : k.path.substr(prefix.size() + 1);
    std::string first = rest.substr(0, rest.find('.'));
    if (std::find(names.begin(), names.end(), first) == names.end()) names.push_back(first);
  }
  return names;
}

class Binder {
 public:
  Binder(Recipe* recipe, std::vector<RecipeIssue>* issues, std::string top_file)
      : recipe_(recipe), issues_(issues), top_file_(std::move(top_file)) {}

  void Walk(const SourceNode& node, const std::string& prefix) {
    for (const SourceNode& child : node.children) {
      std::string path = JoinPath(prefix, child.key);
      if (const RecipeKey* key = FindRecipeKey(path)) {
        BindKey(*key, child, path);
      } else if (FindRecipeSection(path)) {
        section_locs_[path] = child.key_loc;
        if (child.IsNull()) continue;
        if (!child.IsMap()) {
          Issue(child.loc, path, absl::StrCat("expected a map of keys, got ", Shown(child.yaml())));
          continue;
        }
        Walk(child, path);
      } else {
        Unknown(child, prefix, path);
      }
    }
  }

  void CheckRequired() {
    for (const RecipeKey& key : RecipeKeys()) {
      if (!key.required || set_.count(key.path) || bad_.count(key.path)) continue;
      Issue(SectionLoc(ParentOf(key.path)), key.path, absl::StrCat("required key is missing (", key.doc, ")"));
      bad_.insert(key.path);
    }
  }

  // Rules that span keys. A rule whose inputs already failed is skipped: one root cause, one
  // message.
  // A relative env.plugin path (also after python:) is relative to the recipe file that wrote it,
  // as include: paths are. It is stored absolute, so that the resolved recipe the workers load
  // (run_dir/recipe.yaml, in another folder) names the same file.
  void ResolvePluginPath() {
    Recipe& r = *recipe_;
    if (!set_.count("env.plugin") || r.env.IsBuiltin() || r.env.plugin.empty()) return;
    const std::string prefix = r.env.IsPython() ? "python:" : "";
    r.env.plugin = prefix + ResolveFromFile(LocOf("env.plugin").file, r.env.plugin.substr(prefix.size()));
  }

  // pool.elastic: only where the train group can change, bounds that leave a group, a plan
  // within them. `devices` < 0: pool.devices is itself wrong (reported there).
  void CheckElastic(int devices) {
    Recipe& r = *recipe_;
    const auto& e = r.pool.elastic;
    const bool planned = !e.plan.empty();
    if (!Ok({"pool.elastic.resize", "pool.policy", "launch", "pool.elastic.plan"})) return;
    if (!e.resize) {
      if (planned) Issue(LocOf("pool.elastic.plan"), "pool.elastic.plan", "a plan needs `pool.elastic.resize: true`");
      return;
    }
    if (r.pool.policy != PoolPolicy::kElastic) {
      Issue(LocOf("pool.elastic.resize"), "pool.elastic.resize",
            absl::StrCat("the train group only resizes under `pool.policy: elastic` (it is ",
                         std::string(EnumName(r.pool.policy)), ")"));
      return;
    }
    if (r.launch != LaunchKind::kLocal) {
      Issue(LocOf("pool.elastic.resize"), "pool.elastic.resize",
            absl::StrCat("needs `launch: local` (a joining device must share the train ranks' host); launch is ",
                         std::string(EnumName(r.launch))));
      return;
    }
    if (devices < 0 || !Ok({"pool.elastic.min_train", "pool.elastic.max_train", "pool.elastic.min_rollout"})) return;
    const int64_t hi = std::min<int64_t>(e.max_train > 0 ? e.max_train : devices, devices - e.min_rollout);
    if (e.max_train > 0 && e.min_train > e.max_train) {
      Issue(LocOf("pool.elastic.min_train"), "pool.elastic.min_train",
            absl::StrCat("min_train (", e.min_train, ") is above max_train (", e.max_train, ")"));
    } else if (e.min_train > hi) {
      Issue(LocOf("pool.elastic.min_train"), "pool.elastic.min_train",
            absl::StrCat("min_train (", e.min_train, ") leaves no possible train group: ", devices,
                         " devices, min_rollout ", e.min_rollout, ", max_train ", e.max_train));
    } else if (planned) {
      auto plan = ParseElasticPlan(e.plan);
      for (const auto& [step, n] : plan.ok() ? *plan : std::vector<std::pair<int64_t, int64_t>>{}) {
        if (n < e.min_train || n > hi) {
          Issue(LocOf("pool.elastic.plan"), "pool.elastic.plan",
                absl::StrCat("size ", n, " at step ", step, " is outside [", e.min_train, ", ", hi,
                             "] (pool.elastic.min_train, max_train, min_rollout)"));
          break;
        }
      }
    }
  }

  void CheckCrossField() {
    Recipe& r = *recipe_;
    ResolvePluginPath();
    absl::StatusOr<DeviceSet> devices = ParseDeviceSet(r.pool.devices);
    if (devices.ok()) r.pool.device_set = *devices;
    if (devices.ok() && Ok({"pool.devices", "pool.tags.rollout", "pool.tags.train"})) {
      int64_t tagged = r.pool.tags.rollout + r.pool.tags.train;
      if (tagged != devices->size()) {
        Issue(LocOf("pool.tags"), "pool.tags",
              absl::StrCat("rollout (", Value("pool.tags.rollout", r.pool.tags.rollout), ") + train (",
                           Value("pool.tags.train", r.pool.tags.train), ") = ", tagged,
                           " devices, but `pool.devices` (", r.pool.devices, ") has ", devices->size()));
      }
    }
    CheckElastic(devices.ok() ? devices->size() : -1);
    if (r.model.path.empty()) {
      const auto& s = r.model.size;
      if (Ok({"model.size.hidden", "model.size.heads"}) && s.hidden % s.heads != 0) {
        Issue(LocOf("model.size.heads"), "model.size.heads",
              absl::StrCat("heads (", Value("model.size.heads", s.heads), ") must divide hidden (",
                           Value("model.size.hidden", s.hidden), ")"));
      }
      if (Ok({"model.size.heads", "model.size.kv_heads"}) && s.heads % s.kv_heads != 0) {
        Issue(LocOf("model.size.kv_heads"), "model.size.kv_heads",
              absl::StrCat("kv_heads (", Value("model.size.kv_heads", s.kv_heads), ") must divide heads (",
                           Value("model.size.heads", s.heads), ")"));
      }
    } else if (Ok({"model.path"}) && !IsFile(r.model.path + "/config.json")) {
      Issue(LocOf("model.path"), "model.path", absl::StrCat("no config.json in `", r.model.path, "`"));
    }
    if (Ok({"model.tokenizer"}) && r.model.tokenizer != "byte" &&
        !IsFile(r.model.tokenizer + "/tokenizer.json")) {
      Issue(LocOf("model.tokenizer"), "model.tokenizer",
            absl::StrCat("expected `byte` or a directory with a tokenizer.json; `", r.model.tokenizer,
                         "` has no tokenizer.json"));
    }
    if (Ok({"env.plugin"}) && !r.env.plugin.empty() && !r.env.IsBuiltin() &&
        !IsFile(r.env.plugin.substr(r.env.IsPython() ? 7 : 0))) {
      Issue(LocOf("env.plugin"), "env.plugin",
            absl::StrCat(r.env.IsPython() ? "Python file `" : "plugin library `",
                         r.env.plugin.substr(r.env.IsPython() ? 7 : 0),
                         "` does not exist (a relative path resolves from the recipe file that sets it; on the command line, from the working directory)"));
    }
    if (Ok({"openai.serve", "openai.sessions_only"}) && r.openai.sessions_only && !r.openai.serve) {
      Issue(LocOf("openai.sessions_only"), "openai.sessions_only",
            "training on agent sessions only needs the endpoint: set `openai.serve: true`");
    }
    if (Ok({"launch", "pool.devices", "pool.tags.train"}) && r.launch == LaunchKind::kExternal &&
        absl::StartsWith(r.pool.devices, "cpu") && r.pool.tags.train > 1) {
      Issue(LocOf("launch"), "launch",
            absl::StrCat("`launch: external` with a CPU train group of ", r.pool.tags.train,
                         " ranks: CPU train ranks talk over shared memory and must share one machine, which externally "
                         "started workers (one pod each) do not; use `pool.tags.train: 1` or `launch: local`/`slurm`"));
    }
    if (Ok({"env.reward_range"}) && !(r.env.reward_range[0] < r.env.reward_range[1])) {
      Issue(LocOf("env.reward_range"), "env.reward_range",
            absl::StrCat("low (", FormatRecipeFloat(r.env.reward_range[0]), ") must be below high (",
                         FormatRecipeFloat(r.env.reward_range[1]), ")"));
    }
    // The selection itself is weight_sync/transport_factory.h; this gives its refusal a position.
    if (Ok({"weight_sync.backend"}) && r.weight_sync.backend == WeightSyncBackend::kIpc) {
      Issue(LocOf("weight_sync.backend"), "weight_sync.backend",
            "`ipc` needs a trainer and an engine in two processes on one GPU, which the pool never places; use "
            "`nccl`, `cpu` or `auto`");
    }
    if (Ok({"weight_sync.backend", "pool.policy"}) && r.weight_sync.backend == WeightSyncBackend::kNccl &&
        r.pool.policy == PoolPolicy::kColocated) {
      Issue(LocOf("weight_sync.backend"), "weight_sync.backend",
            "`nccl` broadcasts to engines outside the train ranks, and with pool.policy colocated every engine is in a "
            "train rank's worker; use `auto` or `inprocess`");
    }
    if (Ok({"weight_sync.backend", "pool.policy"}) && r.weight_sync.backend == WeightSyncBackend::kInprocess &&
        r.pool.policy != PoolPolicy::kColocated) {
      Issue(LocOf("weight_sync.backend"), "weight_sync.backend",
            absl::StrCat("`inprocess` needs every engine in a train rank's worker (pool.policy: colocated), not `",
                         std::string(EnumName(r.pool.policy)), "`; use `auto` or `cpu`"));
    }
    if (Ok({"algo.clip"}) && r.algo.clip[0] >= 1) {
      Issue(LocOf("algo.clip"), "algo.clip",
            absl::StrCat("low clip must be < 1 (the ratio is clipped to 1 - low), got ", FormatRecipeFloat(r.algo.clip[0])));
    }
  }

 private:
  void BindKey(const RecipeKey& key, const SourceNode& node, const std::string& path) {
    locs_[path] = node.loc;
    if (node.IsNull() && node.children.empty()) return;  // null: keep the default
    RecipeKeyInput input{node.yaml(), nullptr};
    if (key.type == RecipeKeyType::kMap) input.json = SourceToJson(node);
    if (std::optional<RecipeKeyProblem> problem = key.set(input, *recipe_)) {
      SourceLoc loc = problem->mark ? SourceLoc::FromMark(node.loc.file, *problem->mark) : node.loc;
      if (node.loc.line == 0) loc = node.loc;  // overrides have no positions inside them
      Issue(loc, path, problem->message);
      bad_.insert(path);
      return;
    }
    set_.insert(path);
  }

  void Unknown(const SourceNode& node, const std::string& prefix, const std::string& path) {
    std::string suggestion;
    std::string close = ClosestMatch(node.key, ChildNames(prefix));
    if (!close.empty()) {
      suggestion = JoinPath(prefix, close);
    } else {
      // The right name in the wrong section (`train.temperature`), or a typo in a full path.
      std::vector<std::string> all;
      for (const RecipeKey& k : RecipeKeys()) {
        if (LastOf(k.path) == node.key) {
          suggestion = k.path;
          break;
        }
        all.push_back(k.path);
      }
      if (suggestion.empty()) suggestion = ClosestMatch(path, all);
    }
    std::string msg = "unknown key";
    if (!suggestion.empty()) {
      absl::StrAppend(&msg, "; did you mean `", suggestion, "`?");
    } else {
      absl::StrAppend(&msg, "; valid keys here: ", absl::StrJoin(ChildNames(prefix), ", "));
    }
    Issue(node.key_loc, path, msg);
  }

  // A value in a cross-field message, marked when the recipe did not write it.
  std::string Value(const std::string& path, int64_t v) const {
    return set_.count(path) ? absl::StrCat(v) : absl::StrCat(v, ", the default");
  }

  static std::string Shown(const YAML::Node& n) {
    if (n.IsSequence()) return "a list";
    if (n.IsScalar()) return absl::StrCat("`", n.Scalar(), "`");
    return "something else";
  }

  bool Ok(std::initializer_list<const char*> paths) const {
    for (const char* p : paths) {
      if (bad_.count(p)) return false;
    }
    return true;
  }

  // Where a key is written; else its section; else the top file.
  SourceLoc LocOf(const std::string& path) const {
    auto it = locs_.find(path);
    if (it != locs_.end()) return it->second;
    auto s = section_locs_.find(path);
    if (s != section_locs_.end()) return s->second;
    for (const auto& [p, loc] : locs_) {
      if (p.rfind(path + ".", 0) == 0) return loc;
    }
    return SectionLoc(ParentOf(path));
  }

  SourceLoc SectionLoc(const std::string& section) const {
    for (std::string s = section; !s.empty(); s = ParentOf(s)) {
      auto it = section_locs_.find(s);
      if (it != section_locs_.end()) return it->second;
    }
    return SourceLoc{top_file_, 0, 0};
  }

  void Issue(const SourceLoc& loc, const std::string& path, std::string msg) {
    issues_->push_back({loc, path, std::move(msg)});
  }

  Recipe* recipe_;
  std::vector<RecipeIssue>* issues_;
  std::string top_file_;
  std::map<std::string, SourceLoc> locs_;          // key path -> value position
  std::map<std::string, SourceLoc> section_locs_;  // section path -> key position
  std::set<std::string> set_;                      // keys set without error
  std::set<std::string> bad_;                      // keys with an error already reported
};

absl::StatusOr<Recipe> Finish(SourceNode root, const std::string& top_file, const std::vector<std::string>& overrides,
                              std::vector<RecipeIssue> issues, std::vector<std::string> included) {
  for (const std::string& o : overrides) ApplyOverride(o, &root, &issues);
  Recipe recipe = DefaultRecipe();
  Binder binder(&recipe, &issues, top_file);
  binder.Walk(root, "");
  binder.CheckRequired();
  binder.CheckCrossField();
  TIDAL_RETURN_IF_ERROR(IssuesToStatus(std::move(issues), top_file));
  recipe.run_dir = absl::StrReplaceAll(recipe.run_dir, {{"<name>", recipe.name}});
  recipe.checkpoint.dir = absl::StrReplaceAll(recipe.checkpoint.dir, {{"<run_dir>", recipe.run_dir}});
  recipe.included = std::move(included);
  recipe.overrides = overrides;
  return recipe;
}

}  // namespace

absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> ParseElasticPlan(std::string_view plan) {
  std::vector<std::pair<int64_t, int64_t>> out;
  if (plan.empty()) return out;
  const std::string text(plan);
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    const std::string item(piece);
    std::vector<std::string> parts = absl::StrSplit(item, ':');
    int64_t step = 0, n = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &step) || !absl::SimpleAtoi(parts[1], &n) || step < 0 ||
        n < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("`", item, "` is not STEP:N (a step >= 0 and a train-group size >= 1)"));
    }
    if (!out.empty() && step <= out.back().first) {
      return absl::InvalidArgumentError(absl::StrCat("steps must increase: `", item, "` follows step ", out.back().first));
    }
    out.emplace_back(step, n);
  }
  return out;
}

absl::StatusOr<DeviceSet> ParseDeviceSet(std::string_view spec) {
  static const std::regex kCpu(R"(cpu:([0-9]+))");
  static const std::regex kCuda(R"(cuda:([0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*))");
  std::string s(spec);
  std::smatch m;
  DeviceSet out;
  auto bad = [&](std::string why) {
    return absl::InvalidArgumentError(absl::StrCat("`", s, "`: ", why));
  };
  if (std::regex_match(s, m, kCpu)) {
    int n = 0;
    if (!absl::SimpleAtoi(m[1].str(), &n) || n <= 0 || n > 4096) return bad("cpu:N needs 1 <= N <= 4096 slots");
    out.kind = DeviceSet::Kind::kCpu;
    for (int i = 0; i < n; ++i) out.indices.push_back(i);
    return out;
  }
  if (std::regex_match(s, m, kCuda)) {
    out.kind = DeviceSet::Kind::kCuda;
    for (absl::string_view item : absl::StrSplit(m[1].str(), ',')) {
      std::vector<std::string> ends = absl::StrSplit(item, '-');
      int lo = 0, hi = 0;
      if (!absl::SimpleAtoi(ends[0], &lo) || !absl::SimpleAtoi(ends.back(), &hi) || lo > 1023 || hi > 1023) {
        return bad("GPU index out of range");
      }
      if (hi < lo) return bad(absl::StrCat("empty range ", item));
      for (int i = lo; i <= hi; ++i) {
        if (std::find(out.indices.begin(), out.indices.end(), i) != out.indices.end()) {
          return bad(absl::StrCat("GPU ", i, " is listed twice"));
        }
        out.indices.push_back(i);
      }
    }
    return out;
  }
  return bad("expected cpu:N, cuda:I, cuda:A-B or cuda:I,J,... (like cpu:2 or cuda:0-3)");
}

Recipe DefaultRecipe() {
  Recipe r;
  for (const RecipeKey& k : RecipeKeys()) k.set_default(r);
  if (absl::StatusOr<DeviceSet> d = ParseDeviceSet(r.pool.devices); d.ok()) r.pool.device_set = *d;
  return r;
}

absl::StatusOr<Recipe> LoadRecipe(const std::string& path, const std::vector<std::string>& overrides) {
  if (!IsFile(path)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such recipe file"));
  }
  std::vector<RecipeIssue> issues;
  std::vector<std::string> included;
  SourceNode root = ReadRecipeSource(path, &issues, &included);
  TIDAL_ASSIGN_OR_RETURN(Recipe recipe, Finish(std::move(root), path, overrides, std::move(issues), std::move(included)));
  recipe.source_path = path;
  return recipe;
}

absl::StatusOr<Recipe> LoadRecipeFromString(const std::string& yaml_text, const std::string& source_name,
                                            const std::vector<std::string>& overrides, const std::string& base_dir) {
  std::vector<RecipeIssue> issues;
  std::vector<std::string> included;
  SourceNode root = ParseRecipeSource(yaml_text, source_name, base_dir, &issues, &included);
  return Finish(std::move(root), source_name, overrides, std::move(issues), std::move(included));
}

std::string RecipeToYaml(const Recipe& recipe) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  std::vector<std::string> open;  // components of the section being written
  for (const RecipeKey& k : RecipeKeys()) {
    std::vector<std::string> parts = absl::StrSplit(k.path, '.');
    std::string leaf = parts.back();
    parts.pop_back();
    size_t common = 0;
    while (common < open.size() && common < parts.size() && open[common] == parts[common]) ++common;
    while (open.size() > common) {
      e << YAML::EndMap;
      open.pop_back();
    }
    while (open.size() < parts.size()) {
      e << YAML::Key << parts[open.size()] << YAML::Value << YAML::BeginMap;
      open.push_back(parts[open.size()]);
    }
    e << YAML::Key << leaf << YAML::Value;
    k.emit(recipe, e);
  }
  while (!open.empty()) {
    e << YAML::EndMap;
    open.pop_back();
  }
  e << YAML::EndMap;
  std::string header = "# Resolved recipe (every key, defaults included)";
  if (!recipe.source_path.empty()) absl::StrAppend(&header, " from ", recipe.source_path);
  if (!recipe.overrides.empty()) {
    absl::StrAppend(&header, " with overrides: ",
                    absl::StrReplaceAll(absl::StrJoin(recipe.overrides, " "), {{"\n", " "}, {"\r", " "}}));
  }
  return absl::StrCat(header, "\n", e.c_str(), "\n");
}

}  // namespace tidal
