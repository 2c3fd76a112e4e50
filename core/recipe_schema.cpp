#include "core/recipe_schema.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace tidal {
namespace {

// ---- Constraints: one-word builders used by the table below.
struct Constraint {
  std::optional<double> min, max;
  bool min_open = false, max_open = false;
  bool required = false;
  // Extra check on string values: returns "" when the value is fine, else what is wrong.
  std::function<std::string(const std::string&)> string_check;
  std::string text;  // for explain, when the check is not a plain range
};

Constraint Min(double v) {
  Constraint c;
  c.min = v;
  return c;
}
Constraint Above(double v) {
  Constraint c = Min(v);
  c.min_open = true;
  return c;
}
// [lo, hi]
Constraint Range(double lo, double hi) {
  Constraint c = Min(lo);
  c.max = hi;
  return c;
}
// (lo, hi]
Constraint RangeOpenLow(double lo, double hi) {
  Constraint c = Range(lo, hi);
  c.min_open = true;
  return c;
}
Constraint Required() {
  Constraint c;
  c.required = true;
  return c;
}
Constraint Check(std::function<std::string(const std::string&)> check, std::string text) {
  Constraint c;
  c.string_check = std::move(check);
  c.text = std::move(text);
  return c;
}

Constraint Merge(Constraint a, const Constraint& b) {
  if (b.min) { a.min = b.min; a.min_open = b.min_open; }
  if (b.max) { a.max = b.max; a.max_open = b.max_open; }
  a.required |= b.required;
  if (b.string_check) a.string_check = b.string_check;
  if (!b.text.empty()) a.text = b.text;
  return a;
}

// Fold operator for constraints (used by MakeKey's fold expression only).
Constraint operator^(Constraint a, const Constraint& b) { return Merge(std::move(a), b); }

std::string RangeText(const Constraint& c) {
  if (c.min && c.max) {
    return absl::StrCat("in ", c.min_open ? "(" : "[", FormatRecipeFloat(*c.min), ", ", FormatRecipeFloat(*c.max),
                        c.max_open ? ")" : "]");
  }
  if (c.min) return absl::StrCat(c.min_open ? "> " : ">= ", FormatRecipeFloat(*c.min));
  if (c.max) return absl::StrCat(c.max_open ? "< " : "<= ", FormatRecipeFloat(*c.max));
  return "";
}

// Empty when `v` satisfies the range, else the message.
std::string CheckRange(const Constraint& c, double v, const std::string& shown) {
  bool ok = (!c.min || (c.min_open ? v > *c.min : v >= *c.min)) && (!c.max || (c.max_open ? v < *c.max : v <= *c.max));
  return ok ? "" : absl::StrCat("must be ", RangeText(c), ", got ", shown);
}

RecipeKeyProblem Problem(std::string message, std::optional<YAML::Mark> mark = std::nullopt) {
  RecipeKeyProblem p;
  p.message = std::move(message);
  p.mark = mark;
  return p;
}

std::string Describe(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing (null)";
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return absl::StrCat("a list of ", n.size());
  return absl::StrCat("`", n.Scalar(), "`");
}

bool IsQuoted(const YAML::Node& n) { return n.Tag() == "!"; }

// ---- Codecs: YAML <-> member type, one per C++ type a key can have.
template <class T>
struct Codec;

template <>
struct Codec<bool> {
  static constexpr RecipeKeyType kType = RecipeKeyType::kBool;
  static std::string TypeName() { return "bool"; }
  static std::optional<RecipeKeyProblem> Decode(const YAML::Node& n, const Constraint&, bool* out) {
    static const char* kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
    static const char* kFalse[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
    if (n.IsScalar() && !IsQuoted(n)) {
      for (const char* t : kTrue) {
        if (n.Scalar() == t) {
          *out = true;
          return std::nullopt;
        }
      }
      for (const char* f : kFalse) {
        if (n.Scalar() == f) {
          *out = false;
          return std::nullopt;
        }
      }
    }
    return Problem(absl::StrCat("expected true or false, got ", Describe(n)));
  }
  static void Emit(YAML::Emitter& e, bool v) { e << (v ? "true" : "false"); }
};

std::optional<double> ParseDouble(const YAML::Node& n) {
  if (!n.IsScalar()) return std::nullopt;
  const std::string& s = n.Scalar();
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) {
    // YAML spellings from_chars does not take: "+1.0", ".inf".
    try {
      v = n.as<double>();
    } catch (const YAML::Exception&) {
      return std::nullopt;
    }
  }
  return v;
}

template <>
struct Codec<int64_t> {
  static constexpr RecipeKeyType kType = RecipeKeyType::kInt;
  static std::string TypeName() { return "int"; }
  static std::optional<RecipeKeyProblem> Decode(const YAML::Node& n, const Constraint& c, int64_t* out) {
    int64_t v = 0;
    bool ok = false;
    if (n.IsScalar()) {
      const std::string& s = n.Scalar();
      const char* begin = s.data() + (!s.empty() && s[0] == '+' ? 1 : 0);
      auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), v);
      ok = ec == std::errc() && ptr == s.data() + s.size() && begin != s.data() + s.size();
    }
    if (!ok) {
      std::optional<double> d = ParseDouble(n);
      if (d && std::isfinite(*d) && *d == std::floor(*d) && std::fabs(*d) < 9.007199254740992e15) {
        v = static_cast<int64_t>(*d);  // "1e3": an integer written as a float
      } else {
        return Problem(absl::StrCat("expected an integer, got ", Describe(n)));
      }
    }
    std::string range = CheckRange(c, static_cast<double>(v), absl::StrCat(v));
    if (!range.empty()) return Problem(range);
    *out = v;
    return std::nullopt;
  }
  static void Emit(YAML::Emitter& e, int64_t v) { e << absl::StrCat(v); }
};

template <>
struct Codec<double> {
  static constexpr RecipeKeyType kType = RecipeKeyType::kFloat;
  static std::string TypeName() { return "float"; }
  static std::optional<RecipeKeyProblem> Decode(const YAML::Node& n, const Constraint& c, double* out) {
    std::optional<double> v = ParseDouble(n);
    if (!v || IsQuoted(n)) return Problem(absl::StrCat("expected a number, got ", Describe(n)));
    if (!std::isfinite(*v)) return Problem(absl::StrCat("must be a finite number, got ", Describe(n)));
    std::string range = CheckRange(c, *v, n.Scalar());
    if (!range.empty()) return Problem(range);
    *out = *v;
    return std::nullopt;
  }
  static void Emit(YAML::Emitter& e, double v) { e << FormatRecipeFloat(v); }
};

template <>
struct Codec<std::string> {
  static constexpr RecipeKeyType kType = RecipeKeyType::kString;
  static std::string TypeName() { return "string"; }
  static std::optional<RecipeKeyProblem> Decode(const YAML::Node& n, const Constraint& c, std::string* out) {
    if (!n.IsScalar()) return Problem(absl::StrCat("expected a string, got ", Describe(n)));
    if (c.required && n.Scalar().empty()) return Problem("must not be empty");
    if (c.string_check) {
      std::string problem = c.string_check(n.Scalar());
      if (!problem.empty()) return Problem(problem);
    }
    *out = n.Scalar();
    return std::nullopt;
  }
  static void Emit(YAML::Emitter& e, const std::string& v) {
    // Quote what would read back as something else (a number, a bool, null).
    YAML::Node probe;
    bool plain_is_string = true;
    try {
      probe = YAML::Load(v);
      plain_is_string = probe.IsScalar() && probe.Scalar() == v && !ParseDouble(probe) &&
                        v != "true" && v != "false" && v != "null" && v != "~";
    } catch (const YAML::Exception&) {
      plain_is_string = false;
    }
    if (v.empty() || !plain_is_string) {
      e << YAML::DoubleQuoted << v;
    } else {
      e << v;
    }
  }
};

template <class E>
  requires std::is_enum_v<E>
struct Codec<E> {
  static constexpr RecipeKeyType kType = RecipeKeyType::kEnum;
  static std::string TypeName() { return "enum"; }
  static std::vector<std::string> Choices() {
    std::vector<std::string> out;
    for (std::string_view s : EnumNames<E>()) out.emplace_back(s);
    return out;
  }
  static std::optional<RecipeKeyProblem> Decode(const YAML::Node& n, const Constraint&, E* out) {
    std::vector<std::string> choices = Choices();
    if (n.IsScalar()) {
      for (size_t i = 0; i < choices.size(); ++i) {
        if (n.Scalar() == choices[i]) {
          *out = static_cast<E>(i);
          return std::nullopt;
        }
      }
    }
    if (!n.IsScalar()) {
      return Problem(absl::StrCat("expected one of ", absl::StrJoin(choices, ", "), ", got ", Describe(n)));
    }
    std::string msg = absl::StrCat(Describe(n), " is not one of ", absl::StrJoin(choices, ", "));
    {
      std::string close = ClosestMatch(n.Scalar(), choices);
      if (!close.empty()) absl::StrAppend(&msg, "; did you mean `", close, "`?");
    }
    return Problem(msg);
  }
  static void Emit(YAML::Emitter& e, E v) { e << std::string(EnumName(v)); }
};

template <size_t N>
struct Codec<std::array<double, N>> {
  static constexpr RecipeKeyType kType = RecipeKeyType::kFloatList;
  static std::string TypeName() {
    std::vector<std::string> parts(N, "float");
    return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
  }
  static std::optional<RecipeKeyProblem> Decode(const YAML::Node& n, const Constraint& c, std::array<double, N>* out) {
    if (!n.IsSequence() || n.size() != N) {
      return Problem(absl::StrCat("expected a list of ", N, " numbers, got ", Describe(n)));
    }
    std::array<double, N> v{};
    for (size_t i = 0; i < N; ++i) {
      const YAML::Node item = n[i];
      std::optional<double> d = ParseDouble(item);
      if (!d || IsQuoted(item) || !std::isfinite(*d)) {
        return Problem(absl::StrCat("element ", i, ": expected a number, got ", Describe(item)), item.Mark());
      }
      std::string range = CheckRange(c, *d, item.Scalar());
      if (!range.empty()) return Problem(absl::StrCat("element ", i, ": ", range), item.Mark());
      v[i] = *d;
    }
    *out = v;
    return std::nullopt;
  }
  static void Emit(YAML::Emitter& e, const std::array<double, N>& v) {
    e << YAML::Flow << YAML::BeginSeq;
    for (double d : v) e << FormatRecipeFloat(d);
    e << YAML::EndSeq;
  }
};

void EmitJson(YAML::Emitter& e, const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::object:
      e << YAML::BeginMap;
      for (auto it = j.begin(); it != j.end(); ++it) {
        e << YAML::Key << it.key() << YAML::Value;
        EmitJson(e, it.value());
      }
      e << YAML::EndMap;
      break;
    case nlohmann::json::value_t::array:
      e << YAML::Flow << YAML::BeginSeq;
      for (const auto& item : j) EmitJson(e, item);
      e << YAML::EndSeq;
      break;
    case nlohmann::json::value_t::string:
      e << YAML::DoubleQuoted << j.get<std::string>();  // stays a string when read back
      break;
    case nlohmann::json::value_t::boolean:
      e << (j.get<bool>() ? "true" : "false");
      break;
    case nlohmann::json::value_t::number_float: {
      std::string s = FormatRecipeFloat(j.get<double>());
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // stays a float when read back
      e << s;
      break;
    }
    case nlohmann::json::value_t::null:
      e << YAML::Null;
      break;
    default:  // integers
      e << j.dump();
  }
}

template <>
struct Codec<nlohmann::json> {
  static constexpr RecipeKeyType kType = RecipeKeyType::kMap;
  static std::string TypeName() { return "map"; }
  static void Emit(YAML::Emitter& e, const nlohmann::json& v) {
    if (v.empty()) {
      e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    } else {
      EmitJson(e, v);
    }
  }
};

// ---- Binding a table entry to its member.
template <class Accessor>
using MemberOf = std::remove_reference_t<std::invoke_result_t<Accessor, Recipe&>>;

template <class Accessor, class... Cs>
RecipeKey MakeKey(const char* path, Accessor access, std::type_identity_t<MemberOf<Accessor>> def, const char* doc,
                  Cs... constraints) {
  using T = MemberOf<Accessor>;
  using C = Codec<T>;
  Constraint c = (Constraint{} ^ ... ^ constraints);
  RecipeKey key;
  key.path = path;
  key.type = C::kType;
  key.type_name = C::TypeName();
  key.doc = doc;
  key.required = c.required;
  if constexpr (std::is_enum_v<T>) {
    key.choices = C::Choices();
    key.constraint_text = absl::StrCat("one of: ", absl::StrJoin(key.choices, ", "));
  } else {
    key.constraint_text = c.text.empty() ? RangeText(c) : c.text;
  }
  if (!c.required) {
    YAML::Emitter e;
    C::Emit(e, def);
    key.default_text = e.c_str();
  }
  key.set_default = [access, def](Recipe& r) { access(r) = def; };
  key.emit = [access](const Recipe& r, YAML::Emitter& e) { C::Emit(e, access(const_cast<Recipe&>(r))); };
  key.set = [access, c](const RecipeKeyInput& in, Recipe& r) -> std::optional<RecipeKeyProblem> {
    if constexpr (std::is_same_v<T, nlohmann::json>) {
      if (!in.json.is_object()) {
        return Problem(absl::StrCat("expected a map (key: value ...), got ", Describe(in.yaml)));
      }
      access(r) = in.json;
      return std::nullopt;
    } else {
      return C::Decode(in.yaml, c, &access(r));
    }
  };
  return key;
}

std::string CheckDevices(const std::string& spec) {
  absl::StatusOr<DeviceSet> devices = ParseDeviceSet(spec);
  return devices.ok() ? "" : std::string(devices.status().message());
}

std::string CheckPlugin(const std::string& plugin) {
  if (plugin.rfind("builtin:", 0) == 0) {
    return plugin.size() > 8 ? "" : "`builtin:` needs an environment name, like builtin:letter_count";
  }
  if (plugin.rfind("python:", 0) == 0) {
    return plugin.size() > 7 ? "" : "`python:` needs the path of a Python file, like python:my_env.py";
  }
  if (plugin.size() < 3 || plugin.substr(plugin.size() - 3) != ".so") {
    return absl::StrCat("`", plugin, "` is neither builtin:NAME, python:FILE.py nor a path to a shared library (.so)");
  }
  return "";
}

std::string CheckElasticPlan(const std::string& s) {
  absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> plan = ParseElasticPlan(s);
  return plan.ok() ? "" : std::string(plan.status().message());
}

std::string CheckNoSpaces(const std::string& s) {
  return s.find_first_of(" \t/\\") == std::string::npos ? "" : "must not contain spaces or slashes";
}

// The member's path is the key's path: r.train.lr is `train.lr`.
#define KEY(path, ...) MakeKey(#path, [](Recipe& r) -> auto& { return r.path; }, __VA_ARGS__)

std::vector<RecipeKey> BuildKeys() {
  return {
      KEY(name, "", "Run name; names the run directory and labels every metric.", Required(),
          Check(CheckNoSpaces, "no spaces or slashes")),
      KEY(seed, 1, "Seed of every random stream (sampling, data order, init); each worker derives its own."),
      KEY(run_dir, "runs/<name>", "Where logs, metrics, the resolved recipe and checkpoints go; `<name>` is replaced by `name`."),
      KEY(launch, LaunchKind::kLocal,
          "How workers start: local (fork/exec here), slurm (srun job steps inside the allocation; outside one `tidal run` "
          "submits an sbatch script), external (started by others, e.g. Kubernetes; the controller waits for them)."),

      KEY(model.arch, ModelArch::kQwen2, "Architecture of a model built from `model.size` (ignored when `model.path` is set)."),
      KEY(model.path, "", "Hugging Face checkpoint dir (config.json + safetensors); if set, arch and size come from its config.json."),
      KEY(model.tokenizer, "byte", "`byte` (256 bytes + specials) or a dir holding a Hugging Face tokenizer.json."),
      KEY(model.dtype, ModelDtype::kFloat32, "dtype of the master weights on disk and in the rollout engine."),
      KEY(model.rope_theta, 10000.0, "RoPE base frequency of a model built from `model.size`.", Above(0)),
      KEY(model.tie_embeddings, true, "Share the input embedding with the output head (model built from `model.size`)."),
      KEY(model.size.hidden, 128, "Hidden size.", Above(0)),
      KEY(model.size.layers, 4, "Number of decoder layers.", Above(0)),
      KEY(model.size.heads, 4, "Attention heads; must divide `hidden`.", Above(0)),
      KEY(model.size.kv_heads, 2, "Key/value heads (grouped-query attention); must divide `heads`.", Above(0)),
      KEY(model.size.intermediate, 0, "MLP inner size; 0 = 4 * hidden.", Min(0)),
      KEY(model.size.vocab, 0, "Vocabulary size; 0 = the tokenizer's vocabulary size.", Min(0)),

      KEY(warmup.sft.steps, 0, "Supervised warm-up steps on the environment's reference answers before RL; 0 = none.", Min(0)),
      KEY(warmup.sft.lr, 1e-3, "Learning rate of the SFT warm-up.", Above(0)),
      KEY(warmup.sft.batch_size, 32, "Sequences per SFT step.", Above(0)),
      KEY(warmup.sft.reset_optimizer, false,
          "RL starts with fresh AdamW moments instead of continuing the warm-up's; the warm-up's second moments damp RL updates for ~1/(1 - beta2) steps, so a reset wants a lower `train.lr`."),

      KEY(pool.devices, "cpu:2", "Devices of the pool: `cpu:N` (N CPU slots), `cuda:I`, `cuda:A-B` or `cuda:0,2,3`.",
          Check(CheckDevices, "cpu:N | cuda:I | cuda:A-B | cuda:I,J,...")),
      KEY(pool.policy, PoolPolicy::kElastic,
          "static: tags never move; colocated: every device alternates rollout and train; elastic: the controller moves tags to keep both sides busy."),
      KEY(pool.tags.rollout, 1, "Devices tagged rollout at the start; rollout + train must equal the device count.", Min(0)),
      KEY(pool.tags.train, 1, "Devices tagged train at the start.", Min(0)),
      KEY(pool.elastic.resize, false,
          "pool.policy elastic: the train group grows (a rollout device joins training) and shrinks (a train device "
          "returns to rollout) at optimizer-step boundaries, from measured rollout and train throughput; the optimizer "
          "state is re-sharded to the new size (docs/controller.md, \"Elastic train group\"). Off: the group is the "
          "devices tagged train, for the whole run."),
      KEY(pool.elastic.min_train, 1, "Fewest devices in the train group while it resizes.", Above(0)),
      KEY(pool.elastic.max_train, 0, "Most devices in the train group while it resizes; 0 = every device but `min_rollout`.",
          Min(0)),
      KEY(pool.elastic.min_rollout, 0, "Devices that never join the train group (they always roll out).", Min(0)),
      KEY(pool.elastic.switch_cost_s, 0.5,
          "Seconds one device's move costs (state hand-off, pause/resume); a resize is taken only when its predicted "
          "gain over `horizon_steps` steps exceeds this per moved device.", Min(0)),
      KEY(pool.elastic.hysteresis, 0.10,
          "Smallest relative gain of the predicted step period for a resize, so the group does not flap between two "
          "near-equal sizes.", Range(0, 1)),
      KEY(pool.elastic.horizon_steps, 20, "Steps a resize's predicted gain is counted over against its switching cost.",
          Above(0)),
      KEY(pool.elastic.plan, "",
          "Fixed schedule instead of the throughput policy: `STEP:N,STEP:N,...` sets the train group to N devices at the "
          "boundary after STEP steps (for reproducible experiments and tests); \"\" = the policy decides.",
          Check(CheckElasticPlan, "STEP:N[,STEP:N...] with increasing steps and N >= 1")),

      KEY(rollout.group_size, 8, "Completions sampled per prompt (the group of GRPO-style advantages).", Above(0)),
      KEY(rollout.max_new_tokens, 64, "Most tokens generated per completion.", Above(0)),
      KEY(rollout.temperature, 1.0, "Sampling temperature.", Above(0)),
      KEY(rollout.top_p, 1.0, "Nucleus sampling mass; 1 = off.", RangeOpenLow(0, 1)),
      KEY(rollout.top_k, 0, "Sample among the k most likely tokens; 0 = off.", Min(0)),
      KEY(rollout.min_p, 0.0, "Drop tokens below min_p * p(max); 0 = off.", Range(0, 1)),
      KEY(rollout.max_staleness, 1, "Most policy versions a trajectory may lag the trainer when trained on; 0 = on-policy.", Min(0)),
      KEY(rollout.max_batch_tokens, 2048, "Token budget of one engine step (prefill chunks + decodes).", Above(0)),
      KEY(rollout.max_seqs, 64, "Most sequences running at once in one engine.", Above(0)),
      KEY(rollout.block_size, 16, "Tokens per paged-KV block.", Above(0)),
      KEY(rollout.kv_blocks, 0, "Paged-KV blocks per engine; 0 = size from free memory.", Min(0)),

      KEY(env.plugin, "", "Environment: `builtin:NAME`, a path to a plugin shared library (.so), or `python:FILE.py` (an environment written in Python, run in env-worker processes). A relative path is relative to the recipe file that sets it, as `include:` is.", Required(),
          Check(CheckPlugin, "builtin:NAME | path/to/plugin.so | python:path/to/env.py")),
      KEY(env.args, nlohmann::json::object(), "Free-form map handed to the environment as JSON."),
      KEY(env.isolate, true,
          "Run environment plugins in separate env-worker processes: a crash or a hang kills only that process (restarted for the next call), never the controller or a worker. `false` loads the plugin into the calling process (faster calls; only for trusted plugins)."),
      KEY(env.timeout_s, 10.0, "Seconds one environment call may take before it counts as failed.", Above(0)),
      KEY(env.eval_prompts, 200, "Prompts of each evaluation pass.", Min(0)),
      KEY(env.reward_range, {-1e6, 1e6},
          "[low, high]: a reward outside it (an environment's or an agent's) fails its trajectory with a reason instead of being trained on; it keeps a runaway value such as 1e308 from overflowing the advantages."),
      KEY(env.multi_turn, false, "Play each sample as an episode: the plugin's step() judges every model turn and its observation (loss-masked) is appended before the next turn; the sample's reward is the sum of step() rewards. false: one turn, scored by score()."),
      KEY(env.max_turns, 4, "Model turns per episode at most (env.multi_turn); each turn gets up to rollout.max_new_tokens.", Above(0)),

      KEY(algo.name, AlgoName::kGrpo, "Policy-gradient algorithm."),
      KEY(algo.clip, {0.2, 0.28}, "[low, high]: the importance ratio is clipped to [1 - low, 1 + high] (DAPO clip-higher).", Range(0, 10)),
      KEY(algo.loss_agg, LossAgg::kTokenMean,
          "How token losses become the batch loss: token_mean, seq_mean, or seq_sum_norm (Dr. GRPO: sum over tokens / max_new_tokens)."),
      KEY(algo.adv_std_norm, true, "Divide group advantages by the group's reward std (false = Dr. GRPO)."),
      KEY(algo.kl_coef, 0.0, "Weight of the KL penalty to the reference (initial) policy; 0 = no reference model.", Min(0)),
      KEY(algo.kl_estimator, KlEstimator::kK3, "KL estimator (Schulman's k1, k2, k3)."),
      KEY(algo.entropy_coef, 0.0, "Weight of the entropy bonus.", Min(0)),
      KEY(algo.dynamic_sampling, false, "Drop groups whose rewards are all equal and sample more (DAPO)."),
      KEY(algo.dynamic_sampling_limit, 10,
          "Most groups dynamic sampling drops per train batch, in units of `train.prompts_per_step`; past it they are trained on (no gradient), so a collapsed policy cannot stall the run.",
          Above(0)),
      KEY(algo.is_correction.type, IsCorrectionType::kTis,
          "Rollout/trainer mismatch correction: none, tis (truncated importance sampling), mis (masked)."),
      KEY(algo.is_correction.cap, 2.0, "Ratio cap of tis / mask threshold of mis.", Above(0)),

      KEY(train.lr, 1e-4, "Peak learning rate of AdamW.", Above(0)),
      KEY(train.steps, 0, "Optimizer steps of the run.", Required(), Above(0)),
      KEY(train.prompts_per_step, 32, "Prompts per optimizer step (each with `rollout.group_size` completions).", Above(0)),
      KEY(train.micro_batch_tokens, 4096, "Token budget of one forward/backward micro-batch.", Above(0)),
      KEY(train.precision, Precision::kFp32, "Compute precision of the trainer (master weights stay fp32)."),
      KEY(train.grad_clip, 1.0, "Clip the global gradient norm to this; 0 = off.", Min(0)),
      KEY(train.weight_decay, 0.0, "AdamW weight decay.", Min(0)),
      KEY(train.betas, {0.9, 0.999}, "AdamW betas.", Range(0, 1)),
      KEY(train.activation_checkpointing, false, "Recompute activations in the backward pass to save memory."),
      KEY(train.reduce_dtype, Precision::kFp32, "dtype of gradient reduce-scatter."),
      KEY(train.max_nonfinite_steps, 3,
          "A step whose loss or gradient is not finite is skipped (weights unchanged, counted as `train/nonfinite_skipped`); this many such steps in a row stop the run with an error.",
          Above(0)),
      KEY(train.offload, false,
          "CUDA, colocated: move the AdamW moments to pinned host memory while the device rolls out (and back before the next step), leaving the engine 8 bytes per parameter more."),

      KEY(weight_sync.backend, WeightSyncBackend::kAuto,
          "cpu: ZeroMQ frames through the controller's relay; inprocess: each colocated worker copies the policy from its trainer into its engine (device to device, the engine's dtype; needs pool.policy colocated); "
          "nccl: train rank 0 broadcasts each version in bf16 buckets (checksummed) to the engine workers in a group of their own, NCCL on CUDA pools and shared memory on CPU pools (needs engines outside the train ranks: pool.policy static or elastic); "
          "auto: inprocess on colocated CUDA pools, nccl on other CUDA pools, cpu on CPU pools. ipc (CUDA IPC, one GPU shared by two processes) is refused: the pool never places two workers on one GPU."),
      KEY(weight_sync.bucket_mb, 1024,
          "Size of one weight-transfer bucket in MiB. nccl pipelines pack, broadcast and checksum bucket by bucket; fewer, larger buckets spend less per collective (7B on two H200s: 96% of a raw broadcast at 1024, 90% at 256; docs/benchmarks.md). The sender keeps two buckets on its device.",
          Above(0)),
      KEY(weight_sync.timeout_s, 120.0,
          "nccl: seconds a broadcast group's connect or one of its collectives may take; past it the group is dropped, a new one is formed and the version is resent (control.budget.weight_resends).",
          Above(0)),

      KEY(checkpoint.dir, "<run_dir>/checkpoints", "Checkpoint directory; `<run_dir>` is replaced by `run_dir`."),
      KEY(checkpoint.every, 0, "Steps between checkpoints; 0 = off.", Min(0)),
      KEY(checkpoint.resume, false, "Resume from the newest checkpoint in `checkpoint.dir` if there is one."),
      KEY(checkpoint.keep, 2, "Newest checkpoints kept on disk.", Above(0)),

      KEY(metrics.port, 0,
          "Port of the controller's HTTP endpoint (Prometheus /metrics and the web dashboard at /); "
          "0 = any free port (written to <run_dir>/metrics_endpoint.json), -1 = off.",
          Range(-1, 65535)),
      KEY(metrics.bind, "127.0.0.1",
          "Address the metrics endpoint listens on; off loopback every request needs `Authorization: Bearer <token>` "
          "(the token is made per run in <run_dir>/secrets/http_token)."),
      KEY(metrics.jsonl, true, "Also append every step's metrics to <run_dir>/metrics.jsonl (the dashboard reads it)."),
      KEY(metrics.tensorboard, true, "Also write TensorBoard event files to <run_dir>/tensorboard."),

      KEY(eval.every, 0, "Steps between evaluations; 0 = only at the start and the end.", Min(0)),
      KEY(eval.greedy, true, "Evaluate with greedy decoding (else with the rollout sampling settings)."),

      KEY(openai.serve, false,
          "Rollout workers serve the OpenAI-compatible API (/v1/chat/completions, /v1/completions) so that external agents drive the policy; "
          "sessions that report a reward become training trajectories (docs/plugins.md)."),
      KEY(openai.bind, "127.0.0.1",
          "Address the agent endpoints listen on; off loopback every request needs `Authorization: Bearer <token>` "
          "(<run_dir>/secrets/http_token; the `openai` client's api_key)."),
      KEY(openai.port, 0,
          "Port of the endpoint on device 0 (device d listens on port + d); 0 = any free port. The URLs are written to <run_dir>/openai_endpoints.json.",
          Range(0, 65535)),
      KEY(openai.sessions_only, false,
          "Train on agent sessions only: no environment prompts are dispatched (the environment still serves the warm-up and evaluation)."),
      KEY(openai.idle_timeout_s, 300.0, "With `sessions_only`: end the run with an error when no agent session finished for this long.",
          Above(0)),

      KEY(control.heartbeat_ms, 500, "Interval of worker heartbeats (ms).", Above(0)),
      KEY(control.heartbeat_miss, 6, "Missed heartbeats after which a worker is declared dead.", Above(0)),
      KEY(control.request_timeout_ms, 10000, "Timeout of a control request to a worker (ms).", Above(0)),
      KEY(control.bind, "127.0.0.1",
          "Address (or interface) the controller's control socket binds; anything but loopback turns on CURVE and needs "
          "`launch: slurm`/`external` or workers that dial in (docs/scale-out.md)."),
      KEY(control.port, 0, "Port of the control socket; 0 = any free port.", Range(0, 65535)),
      KEY(control.advertise, "",
          "Address workers dial; \"\" = `control.bind`, or this host's name when binding 0.0.0.0 / an interface."),
      KEY(control.curve, CurveMode::kAuto,
          "auto: ZeroMQ CURVE (encryption + client-key check) on a non-loopback control socket; on: also on loopback."),
      KEY(control.credentials, "",
          "JSON credentials file (CURVE keys + run secret, as `tidal k8s render` writes); \"\" = fresh ones per run in <run_dir>/secrets/."),
      KEY(control.budget.env_errors, 200,
          "Prompts in a row that fail (environment reset or scoring error, a reward outside `env.reward_range`, a prompt the engine refuses) before the run stops with an error naming the last cause.",
          Above(0)),
      KEY(control.budget.drops, 2000, "Prompts in a row dropped (any reason) with none trained before the run stops.", Above(0)),
      KEY(control.budget.weight_resends, 5,
          "Times one weight version is re-sent to one device after the device rejected it before the run stops.", Above(0)),
      KEY(control.budget.restarts, 5, "Restarts of one device's worker (after it died or hung) before the run stops; also the most restarts of the whole run from its last checkpoint after a lost train rank.", Min(0)),

      KEY(slurm.partition, "", "sbatch --partition (\"\" = the cluster's default)."),
      KEY(slurm.nodes, 0, "sbatch --nodes; 0 = let Slurm choose.", Min(0)),
      KEY(slurm.time, "", "sbatch --time limit (\"\" = the partition's default)."),
      KEY(slurm.cpus_per_worker, 1, "CPUs per worker job step (srun --cpus-per-task).", Above(0)),
      KEY(slurm.srun_args, "", "Extra srun arguments for every worker step, whitespace-separated."),
      KEY(slurm.sbatch_args, "", "Extra sbatch arguments, whitespace-separated."),
  };
}
#undef KEY

}  // namespace

const std::vector<RecipeKey>& RecipeKeys() {
  static const std::vector<RecipeKey> keys = BuildKeys();
  return keys;
}

const std::vector<RecipeSection>& RecipeSections() {
  static const std::vector<RecipeSection> sections = {
      {"model", "The policy model: built from `size` or loaded from a Hugging Face checkpoint (`path`)."},
      {"model.size", "Shape of a model built from scratch."},
      {"warmup", "Training before RL."},
      {"warmup.sft", "Supervised fine-tuning on the environment's reference answers."},
      {"pool", "The devices and their initial rollout/train tags."},
      {"pool.tags", "How many devices start with each tag."},
      {"pool.elastic", "The elastic train group: growing and shrinking the train group during the run (pool.policy elastic)."},
      {"rollout", "Generation: sampling, batching, paged KV cache, staleness."},
      {"env", "The environment that supplies prompts and scores completions."},
      {"algo", "The policy-gradient objective."},
      {"algo.is_correction", "Importance-sampling correction of the rollout/trainer logprob mismatch."},
      {"train", "Optimizer and trainer."},
      {"weight_sync", "Pushing new policy versions from trainers to rollout engines."},
      {"checkpoint", "Saving and resuming."},
      {"metrics", "Prometheus endpoint, web dashboard and metric logs (docs/observability.md)."},
      {"eval", "Periodic evaluation."},
      {"openai", "The OpenAI-compatible agent endpoint on the rollout workers; agent sessions grouped by their reported `group` (else in arrival order) into groups of `rollout.group_size`."},
      {"control", "Control plane between the controller and the workers."},
      {"control.budget", "Failure budgets: how many failures of each kind the run absorbs before it stops with one error naming the cause and the key."},
      {"slurm", "The Slurm launcher (`launch: slurm`, docs/scale-out.md)."},
  };
  return sections;
}

const std::vector<std::string>& RecipeCrossFieldRules() {
  static const std::vector<std::string> rules = {
      "`pool.tags.rollout + pool.tags.train` equals the number of devices in `pool.devices`.",
      "`model.size.heads` divides `model.size.hidden`; `model.size.kv_heads` divides `model.size.heads`.",
      "`algo.clip`: low < 1 (a ratio clipped to 1 - low must stay positive).",
      "`env.reward_range`: low < high.",
      "`model.path`, when set, is a directory with a config.json; `model.tokenizer`, unless `byte`, is a "
      "directory with a tokenizer.json; `env.plugin`, when a path, is an existing file.",
      "`openai.sessions_only` needs `openai.serve`.",
      "`pool.elastic.resize` needs `pool.policy: elastic` and `launch: local` (the train ranks meet over shared memory "
      "or NCCL on one host); `pool.elastic.min_train <= max_train` (when set) and the bounds leave a train group "
      "possible; every size in `pool.elastic.plan` is within them.",
      "`launch: slurm`/`external` with more than one train rank: the train ranks share a node (the CPU communicator is "
      "shared memory), so `slurm` pins them to the controller's node; `external` refuses a CPU train group of more than one.",
  };
  return rules;
}

const RecipeKey* FindRecipeKey(std::string_view path) {
  for (const RecipeKey& k : RecipeKeys()) {
    if (k.path == path) return &k;
  }
  return nullptr;
}

const RecipeSection* FindRecipeSection(std::string_view path) {
  for (const RecipeSection& s : RecipeSections()) {
    if (s.path == path) return &s;
  }
  return nullptr;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  // Optimal string alignment: insertions, deletions, substitutions and adjacent swaps ("trian").
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const std::string& c : candidates) {
    size_t d = EditDistance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // A typo: a third of the longer word, at least 1, at most 3 edits.
  size_t allowed = std::clamp<size_t>(std::max(word.size(), best.size()) / 3, 1, 3);
  return best_d <= allowed ? best : "";
}

std::string FormatRecipeFloat(double value) {
  // Both spellings are the shortest that read back exactly; prefer the plain one ("0.0001" over
  // "1e-04") unless it gets long ("1e-30").
  char fixed[400], sci[64];
  auto f = std::to_chars(fixed, fixed + sizeof(fixed), value, std::chars_format::fixed);
  auto s = std::to_chars(sci, sci + sizeof(sci), value, std::chars_format::scientific);
  if (f.ec != std::errc() || s.ec != std::errc()) return absl::StrCat(value);
  size_t fixed_len = f.ptr - fixed, sci_len = s.ptr - sci;
  return fixed_len <= std::max<size_t>(8, sci_len) ? std::string(fixed, f.ptr) : std::string(sci, s.ptr);
}

namespace {

std::string SectionOf(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? "" : path.substr(0, dot);
}

std::string TypeCell(const RecipeKey& k) {
  return k.type == RecipeKeyType::kEnum ? absl::StrJoin(k.choices, "|") : k.type_name;
}

std::string DefaultCell(const RecipeKey& k) { return k.required ? "(required)" : k.default_text; }

std::string MdEscape(std::string s) { return absl::StrReplaceAll(s, {{"|", "\\|"}}); }

}  // namespace

std::string ExplainRecipeSchema(ExplainFormat format) {
  const auto& keys = RecipeKeys();
  std::string out;
  if (format == ExplainFormat::kText) {
    size_t w_path = 0, w_type = 0, w_def = 0;
    for (const RecipeKey& k : keys) {
      w_path = std::max(w_path, k.path.size());
      w_type = std::max(w_type, TypeCell(k).size());
      w_def = std::max(w_def, DefaultCell(k).size());
    }
    auto pad = [](std::string s, size_t w) { return s.append(w - std::min(w, s.size()), ' '); };
    absl::StrAppend(&out, pad("KEY", w_path), "  ", pad("TYPE", w_type), "  ", pad("DEFAULT", w_def), "  DOC\n");
    absl::StrAppend(&out, pad("include", w_path), "  ", pad("string|list", w_type), "  ", pad("", w_def),
                    "  Base recipe(s), relative to this file; this file's keys override theirs.\n");
    for (const RecipeKey& k : keys) {
      std::string doc = k.doc;
      if (!k.constraint_text.empty() && k.type != RecipeKeyType::kEnum) absl::StrAppend(&doc, " [", k.constraint_text, "]");
      absl::StrAppend(&out, pad(k.path, w_path), "  ", pad(TypeCell(k), w_type), "  ", pad(DefaultCell(k), w_def), "  ",
                      doc, "\n");
    }
    absl::StrAppend(&out, "\nCross-field rules:\n");
    for (const std::string& r : RecipeCrossFieldRules()) absl::StrAppend(&out, "  - ", r, "\n");
    return out;
  }

  absl::StrAppend(&out,
                  "# Recipe reference\n\n"
                  "<!-- Generated by `tidal recipe explain --format markdown` from core/recipe_schema.cpp; "
                  "do not edit by hand. -->\n\n"
                  "A recipe is one YAML file that describes a run. Every key below is optional unless marked "
                  "(required); an omitted key, or one set to null (`~`), takes its default. Check a recipe with "
                  "`tidal validate RECIPE [key.path=value ...]`; `tidal run` accepts the same overrides.\n\n"
                  "- `include: base.yaml` (or a list) at the top level pulls in base recipes, relative to the "
                  "including file; maps merge key by key and the including file wins. Includes may nest; cycles "
                  "are errors.\n"
                  "- Overrides `key.path=value` on the command line are parsed as YAML (`algo.clip=[0.1,0.3]`, "
                  "`env.args.min_len=4`) and checked like the file; an override replaces the key's whole value, "
                  "a map too (`env.args={}` drops every argument); `key.path=` resets a key to its default.\n"
                  "- Errors name `file:line:col` and the key path; every error of a recipe is reported at once.\n\n");
  std::string current = "\x01";
  std::set<std::string> headed;
  for (const RecipeKey& k : keys) {
    std::string section = SectionOf(k.path);
    if (section != current) {
      current = section;
      if (section.empty()) {
        absl::StrAppend(&out, "## Top level\n\n");
      } else {
        // Enclosing sections without keys of their own ("warmup") get a heading too.
        std::vector<std::string> chain;
        for (std::string s = section; !s.empty(); s = SectionOf(s)) chain.insert(chain.begin(), s);
        for (const std::string& s : chain) {
          if (headed.count(s)) continue;
          headed.insert(s);
          const RecipeSection* info = FindRecipeSection(s);
          absl::StrAppend(&out, "\n## `", s, "`\n\n", info ? info->doc + "\n\n" : "");
        }
      }
      absl::StrAppend(&out, "| key | type | default | allowed | description |\n|---|---|---|---|---|\n");
      if (section.empty()) {
        absl::StrAppend(&out, "| `include` | string or list | | | Base recipe(s), relative to this file. |\n");
      }
    }
    std::string allowed = k.type == RecipeKeyType::kEnum ? absl::StrJoin(k.choices, ", ") : k.constraint_text;
    std::string def = k.required ? "**required**" : absl::StrCat("`", k.default_text, "`");
    absl::StrAppend(&out, "| `", k.path, "` | ", MdEscape(k.type_name), " | ", MdEscape(def), " | ", MdEscape(allowed),
                    " | ", MdEscape(k.doc), " |\n");
  }
  absl::StrAppend(&out, "\n## Cross-field rules\n\n");
  for (const std::string& r : RecipeCrossFieldRules()) absl::StrAppend(&out, "- ", r, "\n");
  return out;
}

}  // namespace tidal
