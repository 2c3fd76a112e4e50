/* tidal environment plugin ABI, version 1.
 *
 * A plugin is a shared library (C, C++, Rust, Zig, ...) that exports ONE symbol:
 *
 *     const tidal_env_api* tidal_env_plugin_v1(void);
 *
 * returning a pointer to a static function table that lives as long as the library is loaded
 * (tidal never dlcloses a plugin). tidal checks `abi_version == TIDAL_ENV_ABI_VERSION` and
 * `struct_size >= sizeof(tidal_env_api)` of the version it was built with, then calls the
 * functions below. Include this header alone; it needs nothing else from tidal.
 *
 * Data model: every structured value crossing the ABI is a NUL-terminated UTF-8 JSON text.
 *   config (create)  : the recipe's `env.args` object, e.g. {"min_len":3,"max_len":8}
 *   reset options    : {"split": "train" | "eval"}  (more keys may be added; ignore unknown ones)
 *   task (reset out) : {"prompt": "count r in strawberry:",          -- required, text for raw LMs
 *                       "messages": [{"role":"user","content":...}], -- optional, for chat models
 *                       "hidden": <any JSON>,                         -- required, never shown to
 *                                                                        the model; passed back
 *                                                                        to score()
 *                       "reference": " 3"}                            -- optional, a correct
 *                                                                        response (SFT target)
 *   step out         : {"observation": "...", "reward": 0.0, "done": true,
 *                       "observation_role": "tool", "info": {...}}    -- role and info optional
 *   score out        : {"reward": 1.0, "info": {...}}                  -- info optional
 *
 * Episode protocol: create -> (reset -> step* until done)* -> destroy. step() receives the
 * model's latest turn (text only, no prompt); the observation it returns is appended to the
 * context before the model's next turn (ignored when done). score() is the reward-only form:
 * it must depend only on (hidden, response) and the config, never on reset/step state, so the
 * host may call it on any instance for any task (e.g. to re-score a finished response).
 * Determinism: reset(seed, options) with equal config must return the same task, in every
 * process (rollout workers, env workers and the controller each create their own instances;
 * `tidal env check` verifies it by resetting twice per seed).
 *
 * What a run does with the plugin (`tidal run`, docs/plugins.md):
 *   - The response text given to score() and step() is the model's completion only: no prompt,
 *     decoded to UTF-8 with special tokens (end-of-text, <|im_end|>) removed; it ends where the
 *     model stopped (an end token or rollout.max_new_tokens), so it may carry text after the
 *     answer. Multi-turn: each step() gets only the latest turn.
 *   - The training reward: single-turn environments get score(hidden, response)["reward"];
 *     multi-turn environments (recipe env.multi_turn) are played with step() and the episode's
 *     reward is the sum of the rewards step() returned. score() also scores eval answers.
 *   - Accuracy (the run's `acc` and the eval accuracy): a boolean "correct" in the info object
 *     counts the response as right or wrong; without it, reward >= 1.0 counts as right.
 *   - Splits: training prompts come from reset(seed, {"split": "train"}) with seeds drawn from
 *     the run's seed; the SFT warm-up trains on "reference" of further train tasks; the eval
 *     set is reset(i, {"split": "eval"}) for i = 0 .. env.eval_prompts - 1, answered greedily.
 *     Keeping the two splits disjoint is the plugin's job: hold tasks out by content (e.g. a
 *     checksum of the task), not by seed, since both splits see small seeds.
 *   - JSON in C: <tidal/env_json.h> reads config / options / hidden values and quotes strings.
 *
 * Return values: every function except destroy returns TIDAL_ENV_OK (0) or TIDAL_ENV_ERROR (1).
 * On error the output pointer points to a human-readable UTF-8 message instead of JSON (a
 * string literal is fine). Never let an exception or longjmp cross this boundary: a C++ plugin
 * catches everything in each entry function.
 *
 * Memory ownership: strings passed IN are owned by tidal and valid only during the call. Strings
 * passed OUT (*out_json, *out_error) are owned by the plugin:
 *   - from reset/step/score: valid until the next call on the same env instance, or destroy;
 *   - from create (*out_error on failure): valid until the next create call on the same thread
 *     (use a string literal or a thread-local buffer).
 * tidal copies them before returning control to the plugin, so one reusable buffer per instance
 * is enough. tidal never frees plugin memory and the plugin never frees tidal's.
 *
 * Threads: tidal serialises all calls on one instance (never two at once), but may call
 * different instances, and create/destroy, from different threads concurrently. A plugin with
 * global mutable state must lock it.
 *
 * Time and crashes: tidal gives each call a time limit (recipe `env.timeout_s`). An in-process
 * plugin that overruns is abandoned (its instance is leaked, not destroyed); with
 * `env.isolate: true` the plugin runs in a separate env-worker process that is killed on
 * timeout and restarted after a crash, so a segfault fails one trajectory, not the run.
 */
#ifndef TIDAL_ENV_PLUGIN_H_
#define TIDAL_ENV_PLUGIN_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TIDAL_ENV_ABI_VERSION 1u
/* Name of the entry point; tidal looks this symbol up with dlsym. */
#define TIDAL_ENV_ENTRY_POINT "tidal_env_plugin_v1"

#define TIDAL_ENV_OK 0
#define TIDAL_ENV_ERROR 1

#if defined(_WIN32)
#define TIDAL_ENV_EXPORT __declspec(dllexport)
#else
#define TIDAL_ENV_EXPORT __attribute__((visibility("default")))
#endif

/* Opaque per-instance state, defined by the plugin. */
typedef struct tidal_env tidal_env;

typedef struct tidal_env_api {
  uint32_t abi_version; /* = TIDAL_ENV_ABI_VERSION the plugin was compiled with */
  uint32_t struct_size; /* = sizeof(tidal_env_api) the plugin was compiled with */
  const char* name;     /* short identifier, e.g. "reverse_string" */
  const char* description;

  /* Builds an instance from `config_json` (an object, "{}" when the recipe gives no args).
   * Reject unknown or invalid keys here with a message naming the key. */
  int (*create)(const char* config_json, tidal_env** out_env, const char** out_error);
  void (*destroy)(tidal_env* env);

  /* Samples the task for `seed` from the split named in `options_json`; starts an episode. */
  int (*reset)(tidal_env* env, uint64_t seed, const char* options_json, const char** out_json);
  /* Feeds the model's turn to the current episode. */
  int (*step)(tidal_env* env, const char* model_turn, const char** out_json);
  /* Reward-only form: scores `response` for the task whose "hidden" value is `hidden_json`. */
  int (*score)(tidal_env* env, const char* hidden_json, const char* response,
               const char** out_json);
} tidal_env_api;

typedef const tidal_env_api* (*tidal_env_plugin_fn)(void);

/* The one symbol a plugin defines. */
TIDAL_ENV_EXPORT const tidal_env_api* tidal_env_plugin_v1(void);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* TIDAL_ENV_PLUGIN_H_ */
