#include "envs/environment.h"

#include <cmath>

#include "envs/env_backend.h"
#include "envs/plugin_library.h"

namespace tidal::envs {

using nlohmann::json;

std::string_view SplitName(Split split) { return split == Split::kEval ? "eval" : "train"; }

std::string RewardRangeProblem(double reward, const std::array<double, 2>& range) {
  if (reward >= range[0] && reward <= range[1]) return "";
  return absl::StrCat("a reward of ", reward, ", outside env.reward_range [", range[0], ", ", range[1], "]");
}

Environment::Environment(EnvSpec spec, std::unique_ptr<EnvBackend> backend)
    : spec_(std::move(spec)), backend_(std::move(backend)) {}

Environment::~Environment() = default;

absl::StatusOr<std::unique_ptr<Environment>> Environment::Open(const EnvSpec& spec) {
  if (!spec.args.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        PluginErrorPrefix(spec.plugin), ": env.args must be a mapping, got ", spec.args.dump()));
  }
  std::unique_ptr<EnvBackend> backend;
  // The Python interpreter (and the user's code) lives only in env-worker processes.
  if (spec.isolate || IsPythonPlugin(spec.plugin)) {
    TIDAL_ASSIGN_OR_RETURN(backend, OpenIsolatedBackend(spec));
  } else {
    TIDAL_ASSIGN_OR_RETURN(backend, OpenInProcessBackend(spec));
  }
  return std::unique_ptr<Environment>(new Environment(spec, std::move(backend)));
}

absl::Status Environment::Malformed(const char* call, const char* why,
                                    const std::string& text) const {
  constexpr size_t kShown = 200;
  std::string shown = text.substr(0, kShown);
  if (text.size() > kShown) shown += "...";
  return absl::InternalError(absl::StrCat(PluginErrorPrefix(spec_.plugin), ": ", call,
                                          "() returned ", why, ": ", shown));
}

namespace {
// Parses without exceptions; nullopt on invalid JSON.
std::optional<json> ParseJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}
}  // namespace

absl::StatusOr<Task> Environment::Reset(uint64_t seed, Split split) {
  const json options = {{"split", SplitName(split)}};
  TIDAL_ASSIGN_OR_RETURN(std::string text, backend_->Reset(seed, options.dump()));
  std::optional<json> j = ParseJson(text);
  if (!j) return Malformed("reset", "invalid JSON", text);
  if (!j->is_object()) return Malformed("reset", "a task that is not a JSON object", text);
  Task task;
  task.seed = seed;
  task.split = split;
  auto prompt = j->find("prompt");
  if (prompt == j->end() || !prompt->is_string()) {
    return Malformed("reset", "a task without a string \"prompt\"", text);
  }
  task.prompt = prompt->get<std::string>();
  auto hidden = j->find("hidden");
  if (hidden == j->end()) return Malformed("reset", "a task without \"hidden\"", text);
  task.hidden = *hidden;
  if (auto m = j->find("messages"); m != j->end() && !m->is_null()) {
    if (!m->is_array()) return Malformed("reset", "\"messages\" that is not an array", text);
    for (const auto& msg : *m) {
      if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() ||
          !msg.contains("content") || !msg["content"].is_string()) {
        return Malformed("reset", "a message without string \"role\" and \"content\"", text);
      }
    }
    task.messages = *m;
  }
  if (auto r = j->find("reference"); r != j->end() && !r->is_null()) {
    if (!r->is_string()) return Malformed("reset", "a \"reference\" that is not a string", text);
    task.reference = r->get<std::string>();
  }
  return task;
}

absl::StatusOr<StepResult> Environment::Step(std::string_view model_turn) {
  TIDAL_ASSIGN_OR_RETURN(std::string text, backend_->Step(std::string(model_turn)));
  std::optional<json> j = ParseJson(text);
  if (!j) return Malformed("step", "invalid JSON", text);
  if (!j->is_object()) return Malformed("step", "a result that is not a JSON object", text);
  StepResult r;
  auto reward = j->find("reward");
  if (reward == j->end() || !reward->is_number() || !std::isfinite(reward->get<double>())) {
    return Malformed("step", "no finite number \"reward\"", text);
  }
  r.reward = reward->get<double>();
  if (std::string why = RewardRangeProblem(r.reward, spec_.reward_range); !why.empty()) {
    return Malformed("step", why.c_str(), text);
  }
  auto done = j->find("done");
  if (done == j->end() || !done->is_boolean()) {
    return Malformed("step", "no boolean \"done\"", text);
  }
  r.done = done->get<bool>();
  if (auto o = j->find("observation"); o != j->end() && !o->is_null()) {
    if (!o->is_string()) return Malformed("step", "an \"observation\" that is not a string", text);
    r.observation = o->get<std::string>();
  }
  if (auto o = j->find("observation_role"); o != j->end() && o->is_string()) {
    r.observation_role = o->get<std::string>();
  }
  if (auto i = j->find("info"); i != j->end() && !i->is_null()) r.info = *i;
  return r;
}

absl::StatusOr<ScoreResult> Environment::Score(const Task& task, std::string_view response) {
  return Score(task.hidden, response);
}

absl::StatusOr<ScoreResult> Environment::Score(const json& hidden, std::string_view response) {
  TIDAL_ASSIGN_OR_RETURN(std::string text,
                         backend_->Score(hidden.dump(), std::string(response)));
  std::optional<json> j = ParseJson(text);
  if (!j) return Malformed("score", "invalid JSON", text);
  if (!j->is_object()) return Malformed("score", "a result that is not a JSON object", text);
  auto reward = j->find("reward");
  if (reward == j->end() || !reward->is_number() || !std::isfinite(reward->get<double>())) {
    return Malformed("score", "no finite number \"reward\"", text);
  }
  ScoreResult r;
  r.reward = reward->get<double>();
  if (std::string why = RewardRangeProblem(r.reward, spec_.reward_range); !why.empty()) {
    return Malformed("score", why.c_str(), text);
  }
  if (auto i = j->find("info"); i != j->end() && !i->is_null()) r.info = *i;
  return r;
}

absl::StatusOr<EnvSpec> EnvSpecFromJson(const json& env) {
  if (!env.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("env: expected a mapping with 'plugin', got ", env.dump()));
  }
  EnvSpec spec;
  for (const auto& [key, value] : env.items()) {
    if (key == "plugin") {
      if (!value.is_string()) return absl::InvalidArgumentError("env.plugin: expected a string");
      spec.plugin = value.get<std::string>();
    } else if (key == "args") {
      if (!value.is_object() && !value.is_null()) {
        return absl::InvalidArgumentError("env.args: expected a mapping");
      }
      if (value.is_object()) spec.args = value;
    } else if (key == "isolate") {
      if (!value.is_boolean()) return absl::InvalidArgumentError("env.isolate: expected a bool");
      spec.isolate = value.get<bool>();
    } else if (key == "timeout_s") {
      if (!value.is_number()) {
        return absl::InvalidArgumentError("env.timeout_s: expected a number of seconds");
      }
      spec.timeout_s = value.get<double>();
    } else if (key == "reward_range") {
      if (!value.is_array() || value.size() != 2 || !value[0].is_number() || !value[1].is_number() ||
          !(value[0].get<double>() < value[1].get<double>())) {
        return absl::InvalidArgumentError("env.reward_range: expected [low, high] with low < high");
      }
      spec.reward_range = {value[0].get<double>(), value[1].get<double>()};
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "env.", key, ": unknown key (known: plugin, args, isolate, timeout_s, reward_range)"));
    }
  }
  if (spec.plugin.empty()) {
    return absl::InvalidArgumentError(
        "env.plugin: missing (builtin:NAME or a path to a plugin shared library)");
  }
  return spec;
}

}  // namespace tidal::envs
