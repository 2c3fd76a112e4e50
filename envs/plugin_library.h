// Resolves a plugin reference to its validated C function table (tidal/env_plugin.h).
//
// "builtin:NAME" looks NAME up in the built-in registry (envs/builtins/); "python:FILE" loads
// the CPython bridge (libtidal_env_python.so, envs/plugins/python_env.cpp) for the Python file
// FILE; anything else is a path given to dlopen(RTLD_NOW | RTLD_LOCAL), whose
// tidal_env_plugin_v1 symbol is called once.
// Libraries stay loaded for the life of the process (a plugin thread abandoned after a timeout
// may still be running its code). Thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "tidal/env_plugin.h"

namespace tidal::envs {

// Errors name the plugin and say what is wrong: file not found / not a shared library
// (dlerror's text), missing entry point, ABI version or table size mismatch, null functions.
absl::StatusOr<const tidal_env_api*> LoadPluginApi(const std::string& plugin);

// Checks a table against this build's ABI; `plugin` names it in the message.
absl::Status ValidatePluginApi(const std::string& plugin, const tidal_env_api* api);

// The config text create() receives: env.args as JSON, or for "python:FILE" the bridge's
// {"file": FILE, "args": env.args}.
std::string PluginCreateConfig(const std::string& plugin, const nlohmann::json& args);

// "python:FILE": runs only in an env-worker process (Environment::Open forces env.isolate).
bool IsPythonPlugin(const std::string& plugin);

// Names accepted after "builtin:".
std::vector<std::string> BuiltinEnvNames();

}  // namespace tidal::envs
