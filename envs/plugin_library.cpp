#include "envs/plugin_library.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <exception>
#include <mutex>

#include "absl/strings/match.h"
#include "envs/builtins/builtins.h"
#include "envs/helper_binary.h"

namespace tidal::envs {
namespace {

struct BuiltinEntry {
  const char* name;
  const tidal_env_api* (*api)();
};

// Listed explicitly (not self-registered) so lookups never depend on static-init order: the
// env-worker and the in-process loader see the same table from the first instruction of main.
const BuiltinEntry kBuiltins[] = {
    {"letter_count", builtins::LetterCountApi},
    {"arithmetic", builtins::ArithmeticApi},
    {"countdown", builtins::CountdownApi},
    {"math_answer", builtins::MathAnswerApi},
    {"tool_calc", builtins::ToolCalcApi},
    {"code_exec", builtins::CodeExecApi},
};

constexpr char kBuiltinPrefix[] = "builtin:";
constexpr size_t kBuiltinPrefixLen = sizeof(kBuiltinPrefix) - 1;
constexpr char kPythonPrefix[] = "python:";
constexpr size_t kPythonPrefixLen = sizeof(kPythonPrefix) - 1;
constexpr char kPythonBridge[] = "libtidal_env_python.so";  // envs/plugins/python_env.cpp

// dlopens `path` and validates its table; `plugin` names it in messages.
absl::StatusOr<const tidal_env_api*> LoadLibraryApi(const std::string& plugin, const std::string& path);

}  // namespace

std::vector<std::string> BuiltinEnvNames() {
  std::vector<std::string> names;
  for (const auto& b : kBuiltins) names.emplace_back(b.name);
  return names;
}

absl::Status ValidatePluginApi(const std::string& plugin, const tidal_env_api* api) {
  const std::string who = absl::StrCat("env plugin '", plugin, "'");
  if (api == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": ", TIDAL_ENV_ENTRY_POINT, "() returned NULL"));
  }
  if (api->abi_version != TIDAL_ENV_ABI_VERSION) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, ": ABI version mismatch: plugin was built for tidal env ABI ", api->abi_version,
        ", this tidal speaks ", TIDAL_ENV_ABI_VERSION, "; rebuild it against this tidal's ",
        "<tidal/env_plugin.h>"));
  }
  if (api->struct_size < sizeof(tidal_env_api)) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, ": function table is ", api->struct_size, " bytes, expected at least ",
        sizeof(tidal_env_api), " (struct_size must be sizeof(tidal_env_api))"));
  }
  const std::pair<const char*, bool> fns[] = {
      {"create", api->create != nullptr}, {"destroy", api->destroy != nullptr},
      {"reset", api->reset != nullptr},   {"step", api->step != nullptr},
      {"score", api->score != nullptr}};
  for (const auto& [fn, present] : fns) {
    if (!present) {
      return absl::FailedPreconditionError(
          absl::StrCat(who, ": function table has no '", fn, "' (NULL pointer)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const tidal_env_api*> LoadPluginApi(const std::string& plugin) {
  const std::string who = absl::StrCat("env plugin '", plugin, "'");
  if (absl::StartsWith(plugin, kBuiltinPrefix)) {
    const std::string_view name = std::string_view(plugin).substr(kBuiltinPrefixLen);
    for (const auto& b : kBuiltins) {
      if (name == b.name) {
        const tidal_env_api* api = b.api();
        TIDAL_RETURN_IF_ERROR(ValidatePluginApi(plugin, api));
        return api;
      }
    }
    std::string known;
    for (const auto& b : kBuiltins) absl::StrAppend(&known, known.empty() ? "" : ", ", b.name);
    return absl::NotFoundError(
        absl::StrCat(who, ": no such built-in environment; built-ins are: ", known));
  }
  if (plugin.empty()) return absl::InvalidArgumentError("env plugin: empty plugin reference");
  struct stat st;
  if (absl::StartsWith(plugin, kPythonPrefix)) {
    const std::string file = plugin.substr(kPythonPrefixLen);
    if (file.empty() || ::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat(who, ": Python file not found"));
    }
    absl::StatusOr<std::string> bridge = FindHelperBinary(kPythonBridge, "TIDAL_ENV_PYTHON");
    if (!bridge.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, ": ", bridge.status().message(), " (tidal builds it when python3-dev is installed)"));
    }
    return LoadLibraryApi(plugin, *bridge);
  }
  if (::stat(plugin.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(
        who, ": file not found (give a path to a shared library, builtin:NAME or python:FILE.py)"));
  }
  // A path without '/' would make dlopen search the library path instead of the file named.
  return LoadLibraryApi(plugin, plugin.find('/') == std::string::npos ? "./" + plugin : plugin);
}

std::string PluginCreateConfig(const std::string& plugin, const nlohmann::json& args) {
  if (absl::StartsWith(plugin, kPythonPrefix)) {
    return nlohmann::json{{"file", plugin.substr(kPythonPrefixLen)}, {"args", args}}.dump();
  }
  return args.dump();
}

bool IsPythonPlugin(const std::string& plugin) { return absl::StartsWith(plugin, kPythonPrefix); }

namespace {

absl::StatusOr<const tidal_env_api*> LoadLibraryApi(const std::string& plugin, const std::string& path) {
  const std::string who = absl::StrCat("env plugin '", plugin, "'");
  // dlopen/dlerror share per-thread error state; one loader at a time keeps messages paired.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = ::dlerror();
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": dlopen failed: ", err ? err : "unknown error"));
  }
  ::dlerror();
  void* sym = ::dlsym(handle, TIDAL_ENV_ENTRY_POINT);
  if (sym == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, ": missing symbol '", TIDAL_ENV_ENTRY_POINT,
        "' (a plugin exports `const tidal_env_api* ", TIDAL_ENV_ENTRY_POINT,
        "(void)` with C linkage and default visibility; see <tidal/env_plugin.h>)"));
  }
  const tidal_env_api* api = nullptr;
  try {
    api = reinterpret_cast<tidal_env_plugin_fn>(sym)();
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(who, ": ", TIDAL_ENV_ENTRY_POINT, "() threw an exception: ", e.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(who, ": ", TIDAL_ENV_ENTRY_POINT, "() threw a non-std exception"));
  }
  TIDAL_RETURN_IF_ERROR(ValidatePluginApi(plugin, api));
  return api;
}

}  // namespace
}  // namespace tidal::envs
