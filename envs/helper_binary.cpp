#include "envs/helper_binary.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

namespace tidal::envs {
namespace {
bool IsExecutable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }
}  // namespace

absl::StatusOr<std::string> FindHelperBinary(const std::string& name, const char* env_var) {
  if (const char* env = std::getenv(env_var); env && *env) {
    if (IsExecutable(env)) return std::string(env);
    return absl::NotFoundError(absl::StrCat(env_var, "=", env, " is not an executable file"));
  }
  std::vector<std::string> tried;
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(&FindHelperBinary), &info) != 0 && info.dli_fname) {
    const std::string lib = info.dli_fname;
    const size_t slash = lib.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : lib.substr(0, slash);
    for (const std::string& cand : {dir + "/" + name, dir + "/../bin/" + name}) {
      if (IsExecutable(cand)) return cand;
      tried.push_back(cand);
    }
  }
#ifdef TIDAL_HELPER_DIR
  const std::string built = std::string(TIDAL_HELPER_DIR) + "/" + name;
  if (IsExecutable(built)) return built;
  tried.push_back(built);
#endif
  std::string list;
  for (const auto& t : tried) absl::StrAppend(&list, list.empty() ? "" : ", ", t);
  return absl::NotFoundError(absl::StrCat(name, " not found (tried ", list, "); build the ",
                                          name, " target or set ", env_var));
}

}  // namespace tidal::envs
