// A careless C++ plugin: reset lets a std::runtime_error escape across the C ABI, and create
// rejects a config by returning an error (the correct way).
#include <cstring>
#include <stdexcept>

#include "plugin_common.h"

extern "C" {
static int throw_create(const char* config, tidal_env** out_env, const char** out_error) {
  if (std::strstr(config, "\"reject\"")) {
    *out_error = "args.reject: this plugin refuses to start";
    return TIDAL_ENV_ERROR;
  }
  return common_create(config, out_env, out_error);
}
static int throw_reset(tidal_env*, uint64_t, const char*, const char**) {
  throw std::runtime_error("boom from reset");
}
static const tidal_env_api kApi = {TIDAL_ENV_ABI_VERSION, sizeof(tidal_env_api), "throws", "",
                                   throw_create, common_destroy, throw_reset, common_step,
                                   common_score};
const tidal_env_api* tidal_env_plugin_v1(void) { return &kApi; }
}
