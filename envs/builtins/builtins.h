// The built-in environments: each returns its static C ABI table (tidal/env_plugin.h), the same
// interface external plugins export, so the loader and env-worker treat both alike.
#pragma once

#include "tidal/env_plugin.h"

namespace tidal::envs::builtins {

const tidal_env_api* LetterCountApi();   // "count r in strawberry:" -> " 3"

}  // namespace tidal::envs::builtins
