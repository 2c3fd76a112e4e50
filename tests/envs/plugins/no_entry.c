/* Exports its table under the wrong name: tidal must report the missing entry point. */
#include "plugin_common.h"

static const tidal_env_api kApi = {TIDAL_ENV_ABI_VERSION, sizeof(tidal_env_api), "no_entry", "",
                                   common_create, common_destroy, common_reset, common_step,
                                   common_score};
__attribute__((visibility("default"))) const tidal_env_api* tidal_env_plugin(void) {
  return &kApi;
}
