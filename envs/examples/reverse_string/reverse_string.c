/* reverse_string: an example tidal environment plugin in plain C.
 *
 * Task: "reverse abcde:" -> the model should answer " edcba".
 * Reward: 1.0 for the exact reversal (leading spaces and anything after the first newline
 * ignored), otherwise the fraction of positions that match, times 0.5, so the policy gets a
 * gradient before it is exactly right.
 *
 * Config (env.args), all optional: {"min_len": 3, "max_len": 6, "alphabet": "abcdef",
 * "long_fraction": 0, "long_max_len": max_len}. Lengths are uniform in [min_len, max_len],
 * except that a share `long_fraction` of the tasks is uniform in (max_len, long_max_len]: a
 * long-tailed workload (most answers short, a few several times longer), since the answer is as
 * long as the string. The eval split holds the strings whose first character is the alphabet's
 * last one; training never sees them.
 *
 * The plugin needs no JSON library: it reads its config, options and hidden values with the
 * header-only helpers of <tidal/env_json.h> and writes its replies with snprintf. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tidal/env_json.h>
#include <tidal/env_plugin.h>

#define MAX_LEN 64

struct tidal_env {
  int min_len, max_len, long_max_len;
  double long_fraction;
  char alphabet[128];
  char target[MAX_LEN + 1]; /* the reversal the current episode expects */
  char out[1024];           /* owns the string returned by the last call (see the ABI) */
};

static uint64_t splitmix(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int create(const char* config, tidal_env** out_env, const char** out_error) {
  tidal_env* env = (tidal_env*)calloc(1, sizeof *env);
  if (!env) {
    *out_error = "out of memory";
    return TIDAL_ENV_ERROR;
  }
  env->min_len = 3;
  env->max_len = 6;
  strcpy(env->alphabet, "abcdef");
  env->min_len = (int)tidal_json_int(config, "min_len", env->min_len);
  env->max_len = (int)tidal_json_int(config, "max_len", env->max_len);
  env->long_max_len = (int)tidal_json_int(config, "long_max_len", env->max_len);
  env->long_fraction = tidal_json_number(config, "long_fraction", 0.0);
  if (tidal_json_find(config, "alphabet") &&
      tidal_json_string(config, "alphabet", env->alphabet, sizeof env->alphabet) < 0) {
    free(env);
    *out_error = "args.alphabet: expected a string of plain characters";
    return TIDAL_ENV_ERROR;
  }
  if (env->min_len < 1 || env->max_len > MAX_LEN || env->min_len > env->max_len) {
    free(env);
    *out_error = "args.min_len/max_len: need 1 <= min_len <= max_len <= 64";
    return TIDAL_ENV_ERROR;
  }
  if (env->long_max_len < env->max_len || env->long_max_len > MAX_LEN || !(env->long_fraction >= 0.0) ||
      env->long_fraction > 1.0) {
    free(env);
    *out_error = "args.long_max_len/long_fraction: need max_len <= long_max_len <= 64 and 0 <= long_fraction <= 1";
    return TIDAL_ENV_ERROR;
  }
  if (strlen(env->alphabet) < 2) {
    free(env);
    *out_error = "args.alphabet: need at least 2 characters";
    return TIDAL_ENV_ERROR;
  }
  *out_env = env;
  return TIDAL_ENV_OK;
}

static void destroy(tidal_env* env) { free(env); }

static int reset(tidal_env* env, uint64_t seed, const char* options, const char** out) {
  char split[16];
  const int eval = tidal_json_string(options, "split", split, sizeof split) > 0 && strcmp(split, "eval") == 0;
  const size_t k = strlen(env->alphabet);
  const char held_out = env->alphabet[k - 1];
  uint64_t state = seed;
  char word[MAX_LEN + 1];
  int len = env->min_len + (int)(splitmix(&state) % (uint64_t)(env->max_len - env->min_len + 1));
  if (env->long_max_len > env->max_len &&
      (double)(splitmix(&state) >> 11) * (1.0 / 9007199254740992.0) < env->long_fraction) {
    len = env->max_len + 1 + (int)(splitmix(&state) % (uint64_t)(env->long_max_len - env->max_len));
  }
  for (int i = 0; i < len; ++i) word[i] = env->alphabet[splitmix(&state) % k];
  word[len] = 0;
  /* The split is decided by the first character: force it into the requested side. */
  if (eval) {
    word[0] = held_out;
  } else if (word[0] == held_out) {
    word[0] = env->alphabet[splitmix(&state) % (k - 1)];
  }
  for (int i = 0; i < len; ++i) env->target[i] = word[len - 1 - i];
  env->target[len] = 0;
  snprintf(env->out, sizeof env->out,
           "{\"prompt\":\"reverse %s:\",\"hidden\":{\"target\":\"%s\"},\"reference\":\" %s\"}",
           word, env->target, env->target);
  *out = env->out;
  return TIDAL_ENV_OK;
}

static double reward_for(const char* target, const char* response, double* matched_frac) {
  while (*response == ' ') ++response;
  size_t n = strcspn(response, "\n");
  size_t t = strlen(target);
  size_t same = 0;
  for (size_t i = 0; i < t && i < n; ++i) same += response[i] == target[i];
  *matched_frac = t ? (double)same / (double)t : 0.0;
  if (n == t && same == t) return 1.0;
  return 0.5 * *matched_frac;
}

static int score(tidal_env* env, const char* hidden, const char* response, const char** out) {
  char target[MAX_LEN + 1];
  if (tidal_json_string(hidden, "target", target, sizeof target) < 0) {
    *out = "score: hidden value has no \"target\" string";
    return TIDAL_ENV_ERROR;
  }
  double frac;
  double r = reward_for(target, response, &frac);
  snprintf(env->out, sizeof env->out, "{\"reward\":%.6f,\"info\":{\"matched\":%.6f}}", r, frac);
  *out = env->out;
  return TIDAL_ENV_OK;
}

static int step(tidal_env* env, const char* turn, const char** out) {
  if (!env->target[0]) {
    *out = "step: no episode running (call reset first)";
    return TIDAL_ENV_ERROR;
  }
  double frac;
  double r = reward_for(env->target, turn, &frac);
  env->target[0] = 0; /* single turn: the episode is over */
  snprintf(env->out, sizeof env->out,
           "{\"observation\":\"\",\"reward\":%.6f,\"done\":true,\"info\":{\"matched\":%.6f}}", r,
           frac);
  *out = env->out;
  return TIDAL_ENV_OK;
}

static const tidal_env_api kApi = {
    TIDAL_ENV_ABI_VERSION, sizeof(tidal_env_api), "reverse_string",
    "reverse a short string; exact match 1.0, partial credit 0.5 x matched fraction",
    create, destroy, reset, step, score,
};

TIDAL_ENV_EXPORT const tidal_env_api* tidal_env_plugin_v1(void) { return &kApi; }
