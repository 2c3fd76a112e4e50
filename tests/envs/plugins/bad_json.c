/* reset returns text that is not JSON; score returns JSON without a reward. */
#include "plugin_common.h"

static int bad_reset(tidal_env* env, uint64_t seed, const char* options, const char** out) {
  (void)env; (void)seed; (void)options;
  *out = "{\"prompt\": \"say ok:\", \"hidden\": {";
  return TIDAL_ENV_OK;
}
static int bad_score(tidal_env* env, const char* hidden, const char* response, const char** out) {
  (void)env; (void)hidden; (void)response;
  *out = "{\"rewrd\": 1.0}";
  return TIDAL_ENV_OK;
}
static const tidal_env_api kApi = {TIDAL_ENV_ABI_VERSION, sizeof(tidal_env_api), "bad_json", "",
                                   common_create, common_destroy, bad_reset, common_step,
                                   bad_score};
const tidal_env_api* tidal_env_plugin_v1(void) { return &kApi; }
