/* A plugin that misbehaves on request, to test time limits and crash isolation.
 * config {"mode": M, "at": C}: at call C ("reset" | "step" | "score") do M:
 *   "hang"  spin forever;  "segv" write through NULL;  "abort" call abort();  "exit" exit(3).
 * The call misbehaves for seed 13 (reset) or a response/turn containing "crash" (score, step);
 * with "every": N instead on every Nth call of that kind (1-based, per instance).
 * Any other call behaves like plugin_common.h. Each env also counts its resets, returned in
 * the prompt, so tests can see a fresh instance after a restart. */
#include <stdio.h>

#include "plugin_common.h"

static int should(const tidal_env* env, const char* call) {
  char at[64];
  snprintf(at, sizeof at, "\"at\":\"%s\"", call);
  return strstr(env->config, at) != NULL;
}

/* 0 without "every"; else N. */
static int every(const tidal_env* env) {
  const char* p = strstr(env->config, "\"every\":");
  return p ? atoi(p + 8) : 0;
}

static int kind_calls[3];  /* reset, step, score: calls so far (one instance per process) */

/* Whether call `kind` (0 reset, 1 step, 2 score) misbehaves this time, `fallback` without "every". */
static int due(const tidal_env* env, int kind, int fallback) {
  const int n = every(env);
  if (n <= 0) return fallback;
  return ++kind_calls[kind] % n == 0;
}

static void misbehave(const tidal_env* env) {
  if (strstr(env->config, "\"mode\":\"hang\"")) {
    for (volatile unsigned long i = 0;; ++i) {
    }
  }
  if (strstr(env->config, "\"mode\":\"segv\"")) {
    volatile int* p = NULL;
    *p = 42;
  }
  if (strstr(env->config, "\"mode\":\"abort\"")) abort();
  if (strstr(env->config, "\"mode\":\"exit\"")) exit(3);
}

static char reset_buf[256];

static int m_reset(tidal_env* env, uint64_t seed, const char* options, const char** out) {
  (void)options;
  if (should(env, "reset") && due(env, 0, seed == 13)) misbehave(env);
  env->calls++;
  snprintf(reset_buf, sizeof reset_buf,
           "{\"prompt\":\"say ok %d:\",\"hidden\":{\"want\":\"ok\"}}", env->calls);
  *out = reset_buf;
  return TIDAL_ENV_OK;
}
static int m_step(tidal_env* env, const char* turn, const char** out) {
  if (should(env, "step") && due(env, 1, strstr(turn, "crash") != NULL)) misbehave(env);
  return common_step(env, turn, out);
}
static int m_score(tidal_env* env, const char* hidden, const char* response, const char** out) {
  if (should(env, "score") && due(env, 2, strstr(response, "crash") != NULL)) misbehave(env);
  return common_score(env, hidden, response, out);
}
static const tidal_env_api kApi = {TIDAL_ENV_ABI_VERSION, sizeof(tidal_env_api), "misbehave", "",
                                   common_create, common_destroy, m_reset, m_step, m_score};
const tidal_env_api* tidal_env_plugin_v1(void) { return &kApi; }
