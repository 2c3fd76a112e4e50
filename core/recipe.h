// The typed recipe: what a user writes in recipe.yaml, validated and filled with defaults.
//
// Contract:
//  - LoadRecipe() is the only way to build a valid Recipe from user input. It reads the YAML
//    file (following `include:`), applies `key.path=value` overrides, checks every key against
//    the schema (core/recipe_schema.h: types, defaults, ranges, enums, docs live there, in one
//    table) and runs the cross-field checks. On failure it returns ONE InvalidArgumentError whose
//    message lists every problem, one per line, each as
//        file:line:col: `key.path`: what is wrong
//    (`<override>: ...` for a command-line override).
//  - A Recipe is plain data: copy it, read it from any thread. Nobody mutates a loaded Recipe
//    except tests. The member names are the recipe's key names (recipe.train.lr is `train.lr`).
//  - RecipeToYaml() writes every key (defaults included) so that LoadRecipe() on that text gives
//    back an equal Recipe; the controller stores it in the run directory.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/kl_estimator.h"
#include "core/status.h"

namespace tidal {

// ---- Enumerated key values. EnumNames<E>() lists the recipe spelling of each enumerator, in
// enumerator order; the schema, the loader and RecipeToYaml all use it.
enum class ModelArch { kQwen2, kQwen3, kLlama };
enum class ModelDtype { kFloat32, kBFloat16 };
enum class PoolPolicy { kStatic, kColocated, kElastic };
enum class AlgoName { kGrpo, kDapo, kGspo, kCispo, kRloo, kReinforcePP };
enum class LossAgg { kTokenMean, kSeqMean, kSeqSumNorm };
enum class IsCorrectionType { kNone, kTis, kMis };
enum class Precision { kFp32, kBf16 };
enum class WeightSyncBackend { kAuto, kCpu, kNccl, kIpc, kInprocess };
enum class LaunchKind { kLocal, kSlurm, kExternal };
enum class CurveMode { kAuto, kOn };

template <class E>
std::span<const std::string_view> EnumNames();

#define TIDAL_RECIPE_ENUM_NAMES_(E, ...)                                   \
  template <>                                                              \
  inline std::span<const std::string_view> EnumNames<E>() {                \
    static constexpr std::string_view kNames[] = {__VA_ARGS__};            \
    return kNames;                                                         \
  }
TIDAL_RECIPE_ENUM_NAMES_(ModelArch, "qwen2", "qwen3", "llama")
TIDAL_RECIPE_ENUM_NAMES_(ModelDtype, "float32", "bfloat16")
TIDAL_RECIPE_ENUM_NAMES_(PoolPolicy, "static", "colocated", "elastic")
TIDAL_RECIPE_ENUM_NAMES_(AlgoName, "grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp")
TIDAL_RECIPE_ENUM_NAMES_(LossAgg, "token_mean", "seq_mean", "seq_sum_norm")
TIDAL_RECIPE_ENUM_NAMES_(KlEstimator, "k1", "k2", "k3")
TIDAL_RECIPE_ENUM_NAMES_(IsCorrectionType, "none", "tis", "mis")
TIDAL_RECIPE_ENUM_NAMES_(Precision, "fp32", "bf16")
TIDAL_RECIPE_ENUM_NAMES_(WeightSyncBackend, "auto", "cpu", "nccl", "ipc", "inprocess")
TIDAL_RECIPE_ENUM_NAMES_(LaunchKind, "local", "slurm", "external")
TIDAL_RECIPE_ENUM_NAMES_(CurveMode, "auto", "on")
#undef TIDAL_RECIPE_ENUM_NAMES_

// Recipe spelling of an enum value: EnumName(AlgoName::kGrpo) == "grpo".
template <class E>
std::string_view EnumName(E value) {
  return EnumNames<E>()[static_cast<size_t>(value)];
}

// The devices of `pool.devices`. Spellings: "cpu:N" (N CPU slots, indices 0..N-1),
// "cuda:I" (one GPU), "cuda:A-B" (GPUs A..B inclusive), "cuda:0,2,5" (a list; items may be
// ranges too).
struct DeviceSet {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  std::vector<int> indices;  // distinct, in the order written
  int size() const { return static_cast<int>(indices.size()); }
};
// Error messages name the spec but no file position (the loader adds it).
absl::StatusOr<DeviceSet> ParseDeviceSet(std::string_view spec);

// `pool.elastic.plan`: "STEP:N,STEP:N,..." -> (step, train-group size) pairs, steps strictly
// increasing, N >= 1; "" -> none. Errors name the item but no file position.
absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> ParseElasticPlan(std::string_view plan);

// Every member below is a recipe key of the same name; defaults, ranges and docs are in
// core/recipe_schema.cpp (`tidal recipe explain` prints them). Members are zero-initialised
// here only so a default-constructed Recipe is deterministic; LoadRecipe fills the defaults.
struct Recipe {
  struct Model {
    ModelArch arch{};
    std::string path;  // HF checkpoint dir; empty = build from `size`
    struct Size {
      int64_t hidden = 0;
      int64_t layers = 0;
      int64_t heads = 0;
      int64_t kv_heads = 0;
      int64_t intermediate = 0;  // 0 = 4 * hidden (see IntermediateSize())
      int64_t vocab = 0;         // 0 = the tokenizer's vocabulary size
    } size;
    std::string tokenizer;  // "byte" or a dir with tokenizer.json
    ModelDtype dtype{};
    double rope_theta = 0;
    bool tie_embeddings = false;

    int64_t IntermediateSize() const { return size.intermediate > 0 ? size.intermediate : 4 * size.hidden; }
  };
  struct Warmup {
    struct Sft {
      int64_t steps = 0;
      double lr = 0;
      int64_t batch_size = 0;
      bool reset_optimizer = false;
    } sft;
  };
  struct Pool {
    std::string devices;
    struct Tags {
      int64_t rollout = 0;
      int64_t train = 0;
    } tags;
    PoolPolicy policy{};
    // The elastic train group (pool.policy elastic): the controller grows or shrinks the train
    // group at step boundaries (scheduler/elastic_policy.h).
    struct Elastic {
      bool resize = false;
      int64_t min_train = 0;
      int64_t max_train = 0;
      int64_t min_rollout = 0;
      double switch_cost_s = 0;
      double hysteresis = 0;
      int64_t horizon_steps = 0;
      std::string plan;  // "STEP:N,STEP:N": fixed train-group sizes instead of the policy
    } elastic;
    DeviceSet device_set;  // derived from `devices` by the loader (not a key)
  };
  struct Rollout {
    int64_t group_size = 0;
    int64_t max_new_tokens = 0;
    double temperature = 0;
    double top_p = 0;
    int64_t top_k = 0;
    double min_p = 0;
    int64_t max_staleness = 0;
    int64_t max_batch_tokens = 0;
    int64_t max_seqs = 0;
    int64_t block_size = 0;
    int64_t kv_blocks = 0;
  };
  struct Env {
    std::string plugin;    // "builtin:NAME" or a path to a .so
    nlohmann::json args;   // free-form object handed to the plugin as JSON
    bool isolate = false;
    double timeout_s = 0;
    int64_t eval_prompts = 0;
    std::array<double, 2> reward_range{};  // {low, high}: rewards outside are rejected
    bool multi_turn = false;  // episodes through step() instead of one scored turn
    int64_t max_turns = 0;

    bool IsBuiltin() const { return plugin.rfind("builtin:", 0) == 0; }
    bool IsPython() const { return plugin.rfind("python:", 0) == 0; }
    std::string BuiltinName() const { return IsBuiltin() ? plugin.substr(8) : std::string(); }
  };
  struct Algo {
    AlgoName name{};
    std::array<double, 2> clip{};  // {low, high}: ratio clipped to [1 - low, 1 + high]
    LossAgg loss_agg{};
    bool adv_std_norm = false;
    double kl_coef = 0;
    KlEstimator kl_estimator{};
    double entropy_coef = 0;
    bool dynamic_sampling = false;
    int64_t dynamic_sampling_limit = 0;
    struct IsCorrection {
      IsCorrectionType type{};
      double cap = 0;
    } is_correction;
  };
  struct Train {
    double lr = 0;
    int64_t steps = 0;
    int64_t prompts_per_step = 0;
    int64_t micro_batch_tokens = 0;
    Precision precision{};
    double grad_clip = 0;
    double weight_decay = 0;
    std::array<double, 2> betas{};
    bool activation_checkpointing = false;
    int64_t max_nonfinite_steps = 0;  // consecutive skipped (non-finite) steps that stop the run
    Precision reduce_dtype{};
    bool offload = false;  // AdamW moments to pinned host memory while the device rolls out
  };
  struct WeightSync {
    WeightSyncBackend backend{};
    int64_t bucket_mb = 0;
    double timeout_s = 0;  // broadcast transport: every connect and collective
  };
  struct Checkpoint {
    std::string dir;
    int64_t every = 0;  // steps between checkpoints; 0 = off
    bool resume = false;
    int64_t keep = 0;
  };
  struct Metrics {
    int64_t port = 0;  // 0 = any free port, -1 = no HTTP endpoint
    std::string bind;
    bool jsonl = false;
    bool tensorboard = false;
  };
  struct Eval {
    int64_t every = 0;  // 0 = only at the start and the end
    bool greedy = false;
  };
  struct OpenAI {
    bool serve = false;
    std::string bind;
    int64_t port = 0;  // device d listens on port + d; 0 = any free port
    bool sessions_only = false;
    double idle_timeout_s = 0;
  };
  struct Control {
    int64_t heartbeat_ms = 0;
    int64_t heartbeat_miss = 0;
    int64_t request_timeout_ms = 0;
    struct Budget {  // failures tolerated before the run stops (scheduler/failure_budget.h)
      int64_t env_errors = 0;      // failed prompts in a row
      int64_t drops = 0;           // dropped prompts in a row
      int64_t weight_resends = 0;  // re-sends of one weight version to one device
      int64_t restarts = 0;        // restarts of one device's worker
    } budget;
    std::string bind;         // address/interface the controller's ROUTER binds
    int64_t port = 0;         // 0 = any free port
    std::string advertise;    // address workers dial ("" = bind, or this host's name for 0.0.0.0)
    CurveMode curve{};        // auto: CURVE iff bind is not loopback; on: always
    std::string credentials;  // credentials file (scheduler/worker_auth.h); "" = made per run
  };
  struct Slurm {
    std::string partition;
    int64_t nodes = 0;  // 0 = let Slurm choose
    std::string time;
    int64_t cpus_per_worker = 0;
    std::string srun_args;    // extra srun arguments, whitespace-separated
    std::string sbatch_args;  // extra sbatch arguments, whitespace-separated
  };

  std::string name;
  int64_t seed = 0;
  std::string run_dir;  // "<name>" in the value is replaced by `name`
  Model model;
  Warmup warmup;
  Pool pool;
  Rollout rollout;
  Env env;
  Algo algo;
  Train train;
  WeightSync weight_sync;
  Checkpoint checkpoint;  // "<run_dir>" in `dir` is replaced by run_dir
  Metrics metrics;
  Eval eval;
  OpenAI openai;
  Control control;
  LaunchKind launch{};
  Slurm slurm;

  // Not keys: where the recipe came from.
  std::string source_path;              // the path given to LoadRecipe ("" if from a string)
  std::vector<std::string> included;    // every file pulled in through `include:`, in load order
  std::vector<std::string> overrides;   // the override strings, as given
};

// Reads, merges, overrides, validates. `overrides` are "key.path=value" with the value parsed
// as YAML ("train.lr=3e-4", "algo.clip=[0.1, 0.3]", "env.args.min_len=4").
absl::StatusOr<Recipe> LoadRecipe(const std::string& path, const std::vector<std::string>& overrides = {});

// Same, from YAML text; `source_name` stands in for the file name in messages and `include:`
// paths resolve against `base_dir` ("" = the working directory).
absl::StatusOr<Recipe> LoadRecipeFromString(const std::string& yaml_text, const std::string& source_name,
                                            const std::vector<std::string>& overrides = {},
                                            const std::string& base_dir = "");

// A Recipe with every default applied and no validation (required keys left empty). For tests
// and for code that builds recipes programmatically; such a recipe has not been validated.
Recipe DefaultRecipe();

// Every key, resolved, in schema order. `LoadRecipeFromString(RecipeToYaml(r), ...)` == r
// (up to source_path / included / overrides).
std::string RecipeToYaml(const Recipe& recipe);

}  // namespace tidal
