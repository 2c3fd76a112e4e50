// BuiltinEnv: the C++ base class of tidal's built-in environments, and the adapter that turns a
// subclass into the C ABI table (tidal/env_plugin.h) every environment is loaded through.
//
// A subclass implements Reset (task JSON for a seed and split) and Score (reward for a response
// given the task's hidden value). Step defaults to the single-turn protocol: it scores the turn
// against the task of the last Reset and ends the episode; multi-turn environments override it.
// Subclasses report bad args or misuse by throwing EnvError (or any std::exception); the adapter
// catches everything and returns TIDAL_ENV_ERROR with the message, so nothing crosses the ABI.
// Calls on one instance are serialised by the host (see the ABI header).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "envs/environment.h"
#include "tidal/env_plugin.h"

namespace tidal::envs::builtins {

class EnvError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class BuiltinEnv {
 public:
  virtual ~BuiltinEnv() = default;
  // Returns {"prompt", "hidden", optional "messages", "reference"} (see the ABI header).
  virtual nlohmann::json Reset(uint64_t seed, Split split) = 0;
  // Returns {"reward", optional "info"}; must not depend on Reset/Step state.
  virtual nlohmann::json Score(const nlohmann::json& hidden, std::string_view response) = 0;
  // Returns {"observation", "reward", "done", optional "info", "observation_role"}.
  virtual nlohmann::json Step(std::string_view model_turn);

 protected:
  // The hidden value of the task of the last Reset (null before the first Reset).
  const nlohmann::json& current_hidden() const { return current_hidden_; }
  // False before the first Reset and after a Step that returned done.
  bool episode_running() const { return !episode_done_; }

 private:
  friend struct Adapter;
  nlohmann::json current_hidden_;
  bool episode_done_ = true;
};

// Builds the static function table for environment class T (constructible from the args
// JSON). Call once per T from the builtin's Api() function.
using BuiltinFactory = std::unique_ptr<BuiltinEnv> (*)(const nlohmann::json& args);
tidal_env_api MakeBuiltinApi(const char* name, const char* description,
                             int (*create)(const char*, tidal_env**, const char**));
int CreateBuiltin(BuiltinFactory factory, const char* config_json, tidal_env** out_env,
                  const char** out_error);

// Defines `const tidal_env_api* FN()` returning the table for class CLS.
#define TIDAL_BUILTIN_ENV(FN, CLS, NAME, DESCRIPTION)                                     \
  const tidal_env_api* FN() {                                                           \
    static const tidal_env_api api = ::tidal::envs::builtins::MakeBuiltinApi(           \
        NAME, DESCRIPTION, [](const char* config, tidal_env** env, const char** error) {  \
          return ::tidal::envs::builtins::CreateBuiltin(                                \
              [](const nlohmann::json& args) -> std::unique_ptr<BuiltinEnv> {           \
                return std::make_unique<CLS>(args);                                     \
              },                                                                        \
              config, env, error);                                                      \
        });                                                                             \
    return &api;                                                                        \
  }

}  // namespace tidal::envs::builtins
