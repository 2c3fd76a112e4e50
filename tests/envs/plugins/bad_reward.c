/* A plugin whose score() returns a bad reward on every Nth call, to test the numerical guards.
 * config {"bad": B, "every": N}: score call k (1-based) with k % N == 0 returns the bad reward B:
 *   "huge" 1e308   "neghuge" -1e308   "inf" 1e999 (overflows: invalid JSON)   "nan" NaN (not JSON)
 *   "nanstr" the string "nan".
 * Other calls return 1.0 for a response with an even number of bytes, else 0.0 (a signal to
 * learn, so groups are not all equal). */
#include <stdio.h>

#include "plugin_common.h"

static const char* bad_reward(const tidal_env* env) {
  if (strstr(env->config, "\"bad\":\"neghuge\"")) return "{\"reward\":-1e308}";
  if (strstr(env->config, "\"bad\":\"huge\"")) return "{\"reward\":1e308}";
  if (strstr(env->config, "\"bad\":\"inf\"")) return "{\"reward\":1e999}";
  if (strstr(env->config, "\"bad\":\"nanstr\"")) return "{\"reward\":\"nan\"}";
  return "{\"reward\":NaN}";
}

static int every(const tidal_env* env) {
  const char* p = strstr(env->config, "\"every\":");
  int n = p ? atoi(p + 8) : 1;
  return n > 0 ? n : 1;
}

static int b_score(tidal_env* env, const char* hidden, const char* response, const char** out) {
  (void)hidden;
  env->calls++;
  if (env->calls % every(env) == 0) {
    *out = bad_reward(env);
  } else {
    *out = strlen(response) % 2 == 0 ? "{\"reward\":1.0}" : "{\"reward\":0.0}";
  }
  return TIDAL_ENV_OK;
}

static const tidal_env_api kApi = {TIDAL_ENV_ABI_VERSION, sizeof(tidal_env_api), "bad_reward", "",
                                   common_create, common_destroy, common_reset, common_step, b_score};
const tidal_env_api* tidal_env_plugin_v1(void) { return &kApi; }
