// Locates tidal's helper executables (tidal-env-worker, tidal-sandbox-exec), which are built next
// to libtidal_envs.so: $<ENV_VAR> if set, else the library's own directory, else ../bin from
// there, else the build tree's path compiled in. The error lists every place tried.
#pragma once

#include <string>

#include "core/status.h"

namespace tidal::envs {

absl::StatusOr<std::string> FindHelperBinary(const std::string& name, const char* env_var);

}  // namespace tidal::envs
