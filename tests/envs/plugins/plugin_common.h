/* Shared body of the test plugins: a trivial single-turn environment ("say ok" -> reward 1)
 * whose entry points each test plugin may sabotage. Plain C, only <tidal/env_plugin.h>. */
#ifndef TIDAL_TEST_PLUGIN_COMMON_H_
#define TIDAL_TEST_PLUGIN_COMMON_H_

#include <stdlib.h>
#include <string.h>

#include <tidal/env_plugin.h>

struct tidal_env {
  char config[256];
  int calls;
};

static int common_create(const char* config_json, tidal_env** out_env, const char** out_error) {
  tidal_env* env = (tidal_env*)calloc(1, sizeof(tidal_env));
  if (!env) {
    *out_error = "out of memory";
    return TIDAL_ENV_ERROR;
  }
  strncpy(env->config, config_json, sizeof(env->config) - 1);
  *out_env = env;
  return TIDAL_ENV_OK;
}

static void common_destroy(tidal_env* env) { free(env); }

static int common_reset(tidal_env* env, uint64_t seed, const char* options, const char** out) {
  (void)seed;
  (void)options;
  env->calls++;
  *out = "{\"prompt\":\"say ok:\",\"hidden\":{\"want\":\"ok\"},\"reference\":\" ok\"}";
  return TIDAL_ENV_OK;
}

static int common_score(tidal_env* env, const char* hidden, const char* response,
                        const char** out) {
  (void)env;
  (void)hidden;
  *out = strstr(response, "ok") ? "{\"reward\":1.0}" : "{\"reward\":0.0}";
  return TIDAL_ENV_OK;
}

static int common_step(tidal_env* env, const char* turn, const char** out) {
  (void)env;
  *out = strstr(turn, "ok") ? "{\"observation\":\"\",\"reward\":1.0,\"done\":true}"
                            : "{\"observation\":\"\",\"reward\":0.0,\"done\":true}";
  return TIDAL_ENV_OK;
}

#endif
