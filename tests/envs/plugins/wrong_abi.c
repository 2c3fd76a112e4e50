/* Built against a future ABI: tidal must refuse it by version. */
#include "plugin_common.h"

static const tidal_env_api kApi = {99u, sizeof(tidal_env_api), "wrong_abi", "ABI 99",
                                   common_create, common_destroy, common_reset, common_step,
                                   common_score};
const tidal_env_api* tidal_env_plugin_v1(void) { return &kApi; }
