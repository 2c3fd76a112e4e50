// `tidal env check PLUGIN`: load an environment plugin the way a run would, play a few tasks
// and print what the model would see and how the reference answer scores. The first thing to
// run after writing a plugin (docs/plugins.md). It also checks determinism: a second instance
// must return the same task for each seed (runs reset tasks in several processes), else the
// check fails naming the seed. `tidal env list`: the built-in environments.
#include <iostream>

#include "envs/environment.h"
#include "envs/plugin_library.h"
#include "tools/cli/command.h"

namespace {

using nlohmann::json;

struct CheckOptions {
  std::string plugin;
  std::string args = "{}";
  bool isolate = false;
  double timeout_s = 10.0;
  int tasks = 3;
  uint64_t seed = 0;
  std::string split = "train";
  std::vector<std::string> responses;
};

absl::Status Check(const CheckOptions& o) {
  tidal::envs::EnvSpec spec;
  spec.plugin = o.plugin;
  spec.args = json::parse(o.args, nullptr, /*allow_exceptions=*/false);
  if (spec.args.is_discarded() || !spec.args.is_object()) {
    return absl::InvalidArgumentError("--args: expected a JSON object, got " + o.args);
  }
  spec.isolate = o.isolate;
  spec.timeout_s = o.timeout_s;
  if (o.split != "train" && o.split != "eval") {
    return absl::InvalidArgumentError("--split: train or eval, got " + o.split);
  }
  const auto split = o.split == "eval" ? tidal::envs::Split::kEval : tidal::envs::Split::kTrain;
  TIDAL_ASSIGN_OR_RETURN(auto env, tidal::envs::Environment::Open(spec));
  TIDAL_ASSIGN_OR_RETURN(auto twin, tidal::envs::Environment::Open(spec));
  std::cout << "loaded " << o.plugin << (o.isolate ? " (isolated env-worker)" : "")
            << " with args " << spec.args.dump() << "\n";
  for (int i = 0; i < o.tasks; ++i) {
    const uint64_t seed = o.seed + static_cast<uint64_t>(i);
    TIDAL_ASSIGN_OR_RETURN(auto task, env->Reset(seed, split));
    TIDAL_ASSIGN_OR_RETURN(auto again, twin->Reset(seed, split));
    const auto as_json = [](const tidal::envs::Task& t) {
      return json{{"prompt", t.prompt}, {"messages", t.messages ? *t.messages : json()},
                  {"hidden", t.hidden}, {"reference", t.reference ? json(*t.reference) : json()}};
    };
    if (as_json(task) != as_json(again)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "env plugin '", o.plugin, "': reset(seed ", seed, ", ", o.split,
          ") is not deterministic: two instances returned different tasks:\n  ",
          as_json(task).dump(), "\n  ", as_json(again).dump(),
          "\n(every process of a run resets tasks; derive everything from the seed and config)"));
    }
    std::cout << "\n[" << o.split << " seed " << seed << "]\n"
              << "  prompt:    " << json(task.prompt).dump() << "\n";
    if (task.messages) std::cout << "  messages:  " << task.messages->dump() << "\n";
    std::cout << "  hidden:    " << task.hidden.dump() << "\n";
    if (task.reference) {
      std::cout << "  reference: " << json(*task.reference).dump() << "\n";
      TIDAL_ASSIGN_OR_RETURN(auto s, env->Score(task, *task.reference));
      std::cout << "  score(reference) = " << s.reward << "  " << s.info.dump() << "\n";
      // Also exercise the episode protocol: a single-turn env ends after one step.
      TIDAL_ASSIGN_OR_RETURN(auto st, env->Step(*task.reference));
      std::cout << "  step(reference)  = reward " << st.reward << ", done "
                << (st.done ? "true" : "false");
      if (!st.observation.empty()) std::cout << ", observation " << json(st.observation).dump();
      std::cout << "\n";
    }
    for (const auto& r : o.responses) {
      TIDAL_ASSIGN_OR_RETURN(auto s, env->Score(task, r));
      std::cout << "  score(" << json(r).dump() << ") = " << s.reward << "  " << s.info.dump()
                << "\n";
    }
  }
  std::cout << "\nok: " << o.tasks << " task(s) played without errors; each seed gave the same task"
            << " in a second instance\n";
  return absl::OkStatus();
}

std::function<absl::Status()> SetupCheck(CLI::App& sub) {
  auto o = std::make_shared<CheckOptions>();
  sub.add_option("plugin", o->plugin, "builtin:NAME, a path to a plugin .so, or python:FILE.py")->required();
  sub.add_option("--args", o->args, "env.args as a JSON object")->capture_default_str();
  sub.add_flag("--isolate", o->isolate, "run the plugin in an env-worker process");
  sub.add_option("--timeout", o->timeout_s, "per-call time limit in seconds")
      ->capture_default_str();
  sub.add_option("--tasks", o->tasks, "how many tasks to play")->capture_default_str();
  sub.add_option("--seed", o->seed, "first seed")->capture_default_str();
  sub.add_option("--split", o->split, "train or eval")->capture_default_str();
  sub.add_option("--response", o->responses, "also score this response (repeatable)");
  return [o] { return Check(*o); };
}

std::function<absl::Status()> SetupList(CLI::App&) {
  return [] {
    for (const auto& name : tidal::envs::BuiltinEnvNames()) {
      auto api = tidal::envs::LoadPluginApi("builtin:" + name);
      std::cout << "builtin:" << name;
      if (api.ok() && (*api)->description) std::cout << "  " << (*api)->description;
      std::cout << "\n";
    }
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("env check", "Load an environment plugin and play a few tasks", SetupCheck);
TIDAL_CLI_COMMAND("env list", "List the built-in environments", SetupList);

}  // namespace
