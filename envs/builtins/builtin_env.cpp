#include "envs/builtins/builtin_env.h"

#include <exception>

// The opaque ABI instance type, as the built-ins define it: the C++ object plus the buffer that
// owns the last returned string (valid until the next call on this instance, per the ABI).
struct tidal_env {
  std::unique_ptr<tidal::envs::builtins::BuiltinEnv> impl;
  std::string out;
};

namespace tidal::envs::builtins {

using nlohmann::json;

json BuiltinEnv::Step(std::string_view model_turn) {
  if (episode_done_) throw EnvError("step() called with no episode running (call reset first)");
  json scored = Score(current_hidden_, model_turn);
  episode_done_ = true;
  return {{"observation", ""},
          {"reward", scored.at("reward")},
          {"done", true},
          {"info", scored.value("info", json::object())}};
}

// Friend of BuiltinEnv: the glue between the C entry points and the C++ object.
struct Adapter {
  // Runs `body` and stores its JSON (or the error message) in env->out.
  template <typename F>
  static int Guard(tidal_env* env, const char** out, F&& body) {
    try {
      // Replace invalid UTF-8 (e.g. from echoed model output) instead of failing the call.
      env->out = body().dump(-1, ' ', false, json::error_handler_t::replace);
      *out = env->out.c_str();
      return TIDAL_ENV_OK;
    } catch (const std::exception& e) {
      env->out = e.what();
    } catch (...) {
      env->out = "unknown exception";
    }
    *out = env->out.c_str();
    return TIDAL_ENV_ERROR;
  }

  static int Reset(tidal_env* env, uint64_t seed, const char* options_json, const char** out) {
    return Guard(env, out, [&] {
      json options = json::parse(options_json ? options_json : "{}");
      const std::string split = options.value("split", "train");
      if (split != "train" && split != "eval") {
        throw EnvError("reset: unknown split '" + split + "' (train or eval)");
      }
      json task = env->impl->Reset(seed, split == "eval" ? Split::kEval : Split::kTrain);
      env->impl->current_hidden_ = task.at("hidden");
      env->impl->episode_done_ = false;
      return task;
    });
  }
  static int Step(tidal_env* env, const char* model_turn, const char** out) {
    return Guard(env, out, [&] {
      json r = env->impl->Step(model_turn ? model_turn : "");
      if (r.value("done", true)) env->impl->episode_done_ = true;
      return r;
    });
  }
  static int Score(tidal_env* env, const char* hidden_json, const char* response,
                   const char** out) {
    return Guard(env, out, [&] {
      return env->impl->Score(json::parse(hidden_json ? hidden_json : "null"),
                              response ? response : "");
    });
  }
  static void Destroy(tidal_env* env) { delete env; }
};

int CreateBuiltin(BuiltinFactory factory, const char* config_json, tidal_env** out_env,
                  const char** out_error) {
  // Per the ABI, a create error lives until the next create on this thread.
  thread_local std::string error;
  try {
    auto env = std::make_unique<tidal_env>();
    json args = json::parse(config_json ? config_json : "{}");
    if (args.is_null()) args = json::object();
    env->impl = factory(args);
    *out_env = env.release();
    return TIDAL_ENV_OK;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown exception";
  }
  *out_error = error.c_str();
  return TIDAL_ENV_ERROR;
}

tidal_env_api MakeBuiltinApi(const char* name, const char* description,
                             int (*create)(const char*, tidal_env**, const char**)) {
  tidal_env_api api{};
  api.abi_version = TIDAL_ENV_ABI_VERSION;
  api.struct_size = sizeof(tidal_env_api);
  api.name = name;
  api.description = description;
  api.create = create;
  api.destroy = &Adapter::Destroy;
  api.reset = &Adapter::Reset;
  api.step = &Adapter::Step;
  api.score = &Adapter::Score;
  return api;
}

}  // namespace tidal::envs::builtins
