/* A plugin whose every Nth reset (by seed) returns a prompt longer than any model tidal builds
 * from model.size (4096 positions): 5000 bytes of "a" before "say ok:". config {"every": N}.
 * The others are the common "say ok" task. */
#include <stdio.h>

#include "plugin_common.h"

static char long_task[5200];

static int every(const tidal_env* env) {
  const char* p = strstr(env->config, "\"every\":");
  int n = p ? atoi(p + 8) : 4;
  return n > 0 ? n : 4;
}

static int l_reset(tidal_env* env, uint64_t seed, const char* options, const char** out) {
  if (seed % (uint64_t)every(env) != 0) return common_reset(env, seed, options, out);
  env->calls++;
  int n = snprintf(long_task, sizeof(long_task), "{\"prompt\":\"");
  memset(long_task + n, 'a', 5000);
  n += 5000;
  snprintf(long_task + n, sizeof(long_task) - n, "say ok:\",\"hidden\":{\"want\":\"ok\"},\"reference\":\" ok\"}");
  *out = long_task;
  return TIDAL_ENV_OK;
}

static const tidal_env_api kApi = {TIDAL_ENV_ABI_VERSION, sizeof(tidal_env_api), "long_prompts", "",
                                   common_create, common_destroy, l_reset, common_step, common_score};
const tidal_env_api* tidal_env_plugin_v1(void) { return &kApi; }
