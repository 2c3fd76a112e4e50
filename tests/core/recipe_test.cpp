// LoadRecipe end to end on real files: defaults, every error kind with its position, all errors
// at once, includes, overrides, cross-field rules, RecipeToYaml round trip.
#include "core/recipe.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/str_join.h"
#include "core/remove_tree.h"
#include "absl/strings/str_split.h"

namespace tidal {
namespace {

using ::testing::HasSubstr;

// A fresh directory per test; files are written relative to it.
// (Not std::filesystem: the torch wheel's libtorch.so exports crashing copies of it.)
class RecipeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tidal_recipe_test_XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override {
    (void)RemoveTree(dir_);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string Write(const std::string& name, const std::string& text) {
    std::string p = Path(name);
    size_t slash = name.rfind('/');
    if (slash != std::string::npos) ::mkdir(Path(name.substr(0, slash)).c_str(), 0755);
    std::ofstream(p) << text;
    return p;
  }

  // Error lines of a failed load.
  static std::vector<std::string> Errors(const absl::StatusOr<Recipe>& r) {
    EXPECT_FALSE(r.ok());
    if (r.ok()) return {};
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    return absl::StrSplit(r.status().message(), '\n');
  }

  std::string dir_;
};

constexpr char kMinimal[] = R"(name: tiny
env: {plugin: "builtin:letter_count"}
train: {steps: 10}
)";

TEST_F(RecipeTest, MinimalRecipeGetsEveryDefault) {
  std::string path = Write("r.yaml", kMinimal);
  absl::StatusOr<Recipe> r = LoadRecipe(path, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name, "tiny");
  EXPECT_EQ(r->source_path, path);
  EXPECT_EQ(r->seed, 1);
  EXPECT_EQ(r->run_dir, "runs/tiny");
  EXPECT_EQ(r->checkpoint.dir, "runs/tiny/checkpoints");
  EXPECT_EQ(r->model.arch, ModelArch::kQwen2);
  EXPECT_EQ(r->model.tokenizer, "byte");
  EXPECT_EQ(r->model.size.hidden, 128);
  EXPECT_EQ(r->model.IntermediateSize(), 4 * 128);
  EXPECT_DOUBLE_EQ(r->train.lr, 1e-4);
  EXPECT_EQ(r->train.steps, 10);
  EXPECT_EQ(r->algo.name, AlgoName::kGrpo);
  EXPECT_DOUBLE_EQ(r->algo.clip[0], 0.2);
  EXPECT_DOUBLE_EQ(r->algo.clip[1], 0.28);
  EXPECT_EQ(r->algo.is_correction.type, IsCorrectionType::kTis);
  EXPECT_DOUBLE_EQ(r->train.betas[1], 0.999);
  EXPECT_EQ(r->pool.devices, "cpu:2");
  EXPECT_EQ(r->pool.device_set.size(), 2);
  EXPECT_EQ(r->pool.policy, PoolPolicy::kElastic);
  EXPECT_TRUE(r->env.IsBuiltin());
  EXPECT_EQ(r->env.BuiltinName(), "letter_count");
  EXPECT_TRUE(r->env.args.is_object());
  EXPECT_TRUE(r->env.args.empty());
  EXPECT_EQ(r->metrics.port, 0);
  EXPECT_EQ(r->metrics.bind, "127.0.0.1");
  EXPECT_EQ(r->control.heartbeat_ms, 500);
}

TEST_F(RecipeTest, ArchitectureSketchRecipeLoads) {
  // The example of the architecture guide, verbatim apart from `steps`.
  std::string path = Write("sketch.yaml", R"(
name: letter-count-grpo
model: {arch: qwen2, size: {hidden: 128, layers: 4, heads: 4, kv_heads: 2}, tokenizer: byte}
warmup: {sft: {steps: 400, lr: 3.0e-3}}
pool: {devices: cpu:2, tags: {rollout: 1, train: 1}, policy: elastic}
rollout: {group_size: 8, max_new_tokens: 16, temperature: 1.0, max_staleness: 1}
env: {plugin: builtin:letter_count, args: {min_len: 4, max_len: 12}}
algo: {name: grpo, clip: [0.2, 0.28], kl_coef: 0.0, is_correction: {type: tis, cap: 2.0}}
train: {lr: 1.0e-4, prompts_per_step: 32, steps: 200, precision: bf16}
weight_sync: {backend: auto, bucket_mb: 512}
checkpoint: {dir: runs/letter-count, every: 50}
metrics: {port: 9400}
)");
  absl::StatusOr<Recipe> r = LoadRecipe(path, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->warmup.sft.steps, 400);
  EXPECT_DOUBLE_EQ(r->warmup.sft.lr, 3e-3);
  EXPECT_EQ(r->rollout.max_new_tokens, 16);
  EXPECT_EQ(r->train.precision, Precision::kBf16);
  EXPECT_EQ(r->checkpoint.dir, "runs/letter-count");
  EXPECT_EQ(r->env.args, nlohmann::json({{"min_len", 4}, {"max_len", 12}}));
}

TEST_F(RecipeTest, MisspelledKeyNamesFileLineColumnAndSuggests) {
  std::string path = Write("x.yaml", R"(name: tiny
env: {plugin: "builtin:letter_count"}
train:
  steps: 10
  lrr: 3e-4
)");
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], absl::StrCat(path, ":5:3: `train.lrr`: unknown key; did you mean `train.lr`?"));
}

TEST_F(RecipeTest, UnknownSectionAndKeyInWrongSectionGetSuggestions) {
  std::string path = Write("x.yaml", R"(name: tiny
env: {plugin: "builtin:letter_count"}
trian: {steps: 10}
train: {steps: 10, temperature: 0.7}
zzzzzz: 1
)");
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 3u) << absl::StrJoin(errors, "\n");
  EXPECT_EQ(errors[0], absl::StrCat(path, ":3:1: `trian`: unknown key; did you mean `train`?"));
  EXPECT_EQ(errors[1], absl::StrCat(path, ":4:20: `train.temperature`: unknown key; did you mean `rollout.temperature`?"));
  EXPECT_THAT(errors[2], HasSubstr(":5:1: `zzzzzz`: unknown key; valid keys here: include, name, seed"));
}

TEST_F(RecipeTest, EveryErrorIsReportedAtOnce) {
  std::string path = Write("bad.yaml", R"(name: tiny
model:
  arch: qwen4
  size: {hidden: many}
rollout:
  temperature: 0
  top_p: 1.5
algo: {clip: [0.2], adv_std_norm: maybe}
train: {lr: -1}
metrics: {port: 70000}
pool: {devices: gpu:2}
)");
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  std::string all = absl::StrJoin(errors, "\n");
  EXPECT_THAT(all, HasSubstr(absl::StrCat(path, ":3:9: `model.arch`: `qwen4` is not one of qwen2, qwen3, llama; did you mean `qwen2`?")));
  EXPECT_THAT(all, HasSubstr(absl::StrCat(path, ":4:18: `model.size.hidden`: expected an integer, got `many`")));
  EXPECT_THAT(all, HasSubstr(absl::StrCat(path, ":6:16: `rollout.temperature`: must be > 0, got 0")));
  EXPECT_THAT(all, HasSubstr(absl::StrCat(path, ":7:10: `rollout.top_p`: must be in (0, 1], got 1.5")));
  EXPECT_THAT(all, HasSubstr("`algo.clip`: expected a list of 2 numbers, got a list of 1"));
  EXPECT_THAT(all, HasSubstr("`algo.adv_std_norm`: expected true or false, got `maybe`"));
  EXPECT_THAT(all, HasSubstr("`train.lr`: must be > 0, got -1"));
  EXPECT_THAT(all, HasSubstr("`metrics.port`: must be in [-1, 65535], got 70000"));
  EXPECT_THAT(all, HasSubstr(":11:17: `pool.devices`: `gpu:2`: expected cpu:N"));
  EXPECT_THAT(all, HasSubstr(absl::StrCat(path, ": `env.plugin`: required key is missing")));
  EXPECT_THAT(all, HasSubstr("`train.steps`: required key is missing"));
  EXPECT_EQ(errors.size(), 11u) << all;
}

TEST_F(RecipeTest, ListElementErrorPointsAtTheElement) {
  std::string path = Write("x.yaml", absl::StrCat(kMinimal, "algo:\n  clip: [0.2, high]\n"));
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], absl::StrCat(path, ":5:15: `algo.clip`: element 1: expected a number, got `high`"));
}

TEST_F(RecipeTest, SyntaxErrorHasPosition) {
  std::string path = Write("x.yaml", "name: tiny\ntrain: {steps: [1, 2}\n");
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_FALSE(errors.empty());
  EXPECT_THAT(errors[0], testing::StartsWith(absl::StrCat(path, ":2:")));
  EXPECT_THAT(errors[0], HasSubstr("YAML syntax error"));
}

TEST_F(RecipeTest, DuplicateKeyIsAnError) {
  std::string path = Write("x.yaml", absl::StrCat(kMinimal, "seed: 3\nseed: 4\n"));
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], absl::StrCat(path, ":5:1: `seed`: duplicate key (first written at line 4)"));
}

TEST_F(RecipeTest, MissingFileIsNotFound) {
  absl::StatusOr<Recipe> r = LoadRecipe(Path("nope.yaml"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("nope.yaml"));
}

TEST_F(RecipeTest, TagsMustAddUpToDeviceCount) {
  std::string path = Write("x.yaml", absl::StrCat(kMinimal, "pool:\n  devices: cuda:0-3\n  tags: {rollout: 1, train: 2}\n"));
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], absl::StrCat(path, ":6:3: `pool.tags`: rollout (1) + train (2) = 3 devices, but "
                                          "`pool.devices` (cuda:0-3) has 4"));
}

TEST_F(RecipeTest, WeightSyncBackendsAreCheckedAgainstThePool) {
  // ipc: the pool never puts a trainer and an engine process on one GPU.
  std::string path = Write("x.yaml", absl::StrCat(kMinimal, "weight_sync: {backend: ipc}\n"));
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rfind(absl::StrCat(path, ":4:"), 0), 0u) << errors[0];
  EXPECT_THAT(errors[0], HasSubstr("`weight_sync.backend`: `ipc` needs a trainer and an engine in two processes on one GPU"));
  // nccl: needs engines outside the train ranks.
  std::string colocated = Write("c.yaml", absl::StrCat(kMinimal, "pool: {devices: 'cpu:2', policy: colocated}\n",
                                                       "weight_sync: {backend: nccl}\n"));
  errors = Errors(LoadRecipe(colocated, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rfind(absl::StrCat(colocated, ":5:"), 0), 0u) << errors[0];
  EXPECT_THAT(errors[0], HasSubstr("`nccl` broadcasts to engines outside the train ranks"));
  // ... and on a CPU pool with a static split it is the shm broadcast.
  std::string cpu = Write("n.yaml", absl::StrCat(kMinimal, "pool: {devices: 'cpu:2', tags: {rollout: 1, train: 1}, policy: static}\n",
                                                 "weight_sync: {backend: nccl, timeout_s: 7.5}\n"));
  absl::StatusOr<Recipe> r = LoadRecipe(cpu, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->weight_sync.backend, WeightSyncBackend::kNccl);
  EXPECT_EQ(r->weight_sync.timeout_s, 7.5);
  std::string bad_timeout = Write("t.yaml", absl::StrCat(kMinimal, "weight_sync: {timeout_s: 0}\n"));
  errors = Errors(LoadRecipe(bad_timeout, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("weight_sync.timeout_s"));
  std::string ok = Write("y.yaml", absl::StrCat(kMinimal, "weight_sync: {backend: cpu}\n"));
  EXPECT_TRUE(LoadRecipe(ok, {}).ok());
}

TEST_F(RecipeTest, ElasticResizeKeysAreChecked) {
  // A plan within the bounds loads; its sizes are parsed in order.
  std::string ok = Write("ok.yaml", absl::StrCat(kMinimal, "pool: {devices: 'cpu:3', tags: {rollout: 2, train: 1}, "
                                                           "elastic: {resize: true, plan: '2:2,4:1', max_train: 2}}\n"));
  absl::StatusOr<Recipe> r = LoadRecipe(ok, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->pool.elastic.resize);
  auto plan = ParseElasticPlan(r->pool.elastic.plan);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(*plan, (std::vector<std::pair<int64_t, int64_t>>{{2, 2}, {4, 1}}));
  // Only under the elastic policy.
  std::string stat = Write("s.yaml", absl::StrCat(kMinimal, "pool: {policy: static, elastic: {resize: true}}\n"));
  std::vector<std::string> errors = Errors(LoadRecipe(stat, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("`pool.elastic.resize`: the train group only resizes under `pool.policy: elastic` (it is static)"));
  // A malformed plan names the item; a size outside the bounds names the bounds.
  std::string bad = Write("b.yaml", absl::StrCat(kMinimal, "pool: {elastic: {resize: true, plan: '3:2,2:1'}}\n"));
  errors = Errors(LoadRecipe(bad, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("`pool.elastic.plan`: steps must increase: `2:1` follows step 3"));
  std::string big = Write("g.yaml", absl::StrCat(kMinimal, "pool: {elastic: {resize: true, plan: '1:2', min_rollout: 1}}\n"));
  errors = Errors(LoadRecipe(big, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("`pool.elastic.plan`: size 2 at step 1 is outside [1, 1]"));
  std::string off = Write("o.yaml", absl::StrCat(kMinimal, "pool: {elastic: {plan: '1:2'}}\n"));
  errors = Errors(LoadRecipe(off, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("a plan needs `pool.elastic.resize: true`"));
}

TEST_F(RecipeTest, HeadsMustDivide) {
  std::string path = Write("x.yaml", absl::StrCat(kMinimal, "model: {size: {hidden: 100, heads: 3, kv_heads: 2}}\n"));
  std::string all = absl::StrJoin(Errors(LoadRecipe(path, {})), "\n");
  EXPECT_THAT(all, HasSubstr("`model.size.heads`: heads (3) must divide hidden (100)"));
  EXPECT_THAT(all, HasSubstr("`model.size.kv_heads`: kv_heads (2) must divide heads (3)"));
}

TEST_F(RecipeTest, FileSystemReferencesAreChecked) {
  std::string path = Write("x.yaml", R"(name: tiny
model: {path: /nonexistent/ckpt, tokenizer: /nonexistent/tok}
env: {plugin: /nonexistent/env.so}
train: {steps: 1}
)");
  std::string all = absl::StrJoin(Errors(LoadRecipe(path, {})), "\n");
  EXPECT_THAT(all, HasSubstr(":2:15: `model.path`: no config.json in `/nonexistent/ckpt`"));
  EXPECT_THAT(all, HasSubstr("`model.tokenizer`: expected `byte` or a directory with a tokenizer.json"));
  EXPECT_THAT(all, HasSubstr(":3:15: `env.plugin`: plugin library `/nonexistent/env.so` does not exist"));
}

TEST_F(RecipeTest, NullKeepsTheDefault) {
  std::string path = Write("x.yaml", absl::StrCat(kMinimal, "seed: ~\nmodel:\nrollout: {top_k: }\n"));
  absl::StatusOr<Recipe> r = LoadRecipe(path, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->seed, 1);
  EXPECT_EQ(r->rollout.top_k, 0);
}

TEST_F(RecipeTest, IncludeMergesAndIncludingFileWins) {
  Write("base/common.yaml", R"(seed: 7
model: {size: {hidden: 64, layers: 2}}
env: {plugin: "builtin:letter_count", args: {min_len: 4, max_len: 12}}
)");
  Write("base/algo.yaml", "include: common.yaml\nalgo: {name: dapo, clip: [0.1, 0.3]}\n");
  std::string path = Write("run.yaml", R"(include: base/algo.yaml
name: child
model: {size: {layers: 6}}
env: {args: {max_len: 20}}
train: {steps: 3}
)");
  absl::StatusOr<Recipe> r = LoadRecipe(path, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->seed, 7);
  EXPECT_EQ(r->model.size.hidden, 64);
  EXPECT_EQ(r->model.size.layers, 6);
  EXPECT_EQ(r->algo.name, AlgoName::kDapo);
  EXPECT_EQ(r->env.args, nlohmann::json({{"min_len", 4}, {"max_len", 20}}));
  ASSERT_EQ(r->included.size(), 2u);
  EXPECT_THAT(r->included[0], HasSubstr("algo.yaml"));
  EXPECT_THAT(r->included[1], HasSubstr("common.yaml"));
}

TEST_F(RecipeTest, ErrorInIncludedFileNamesThatFile) {
  std::string base = Write("base.yaml", "seed: 1\ntrain:\n  lr: fast\n");
  std::string path = Write("run.yaml", absl::StrCat("include: base.yaml\n", kMinimal, "rollout: {tempreature: 1}\n"));
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 2u) << absl::StrJoin(errors, "\n");
  EXPECT_EQ(errors[0], absl::StrCat(path, ":5:11: `rollout.tempreature`: unknown key; did you mean `rollout.temperature`?"));
  EXPECT_EQ(errors[1], absl::StrCat(base, ":3:7: `train.lr`: expected a number, got `fast`"));
}

TEST_F(RecipeTest, IncludeCycleIsAnError) {
  Write("a.yaml", "include: b.yaml\nseed: 2\n");
  Write("b.yaml", "include: a.yaml\n");
  std::string path = Write("a.yaml", absl::StrCat("include: b.yaml\n", kMinimal));
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("b.yaml:1:10: `include`: include cycle: "));
  EXPECT_THAT(errors[0], HasSubstr("a.yaml -> "));
}

TEST_F(RecipeTest, MissingIncludeIsAnError) {
  std::string path = Write("run.yaml", absl::StrCat("include: [nope.yaml]\n", kMinimal));
  std::vector<std::string> errors = Errors(LoadRecipe(path, {}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], absl::StrCat(path, ":1:11: `include`: cannot read included file ", Path("nope.yaml")));
}

TEST_F(RecipeTest, OverridesApplyAndAreValidated) {
  std::string path = Write("r.yaml", kMinimal);
  absl::StatusOr<Recipe> r = LoadRecipe(path, {"train.lr=3e-4", "algo.clip=[0.1, 0.3]", "env.args.min_len=5",
                                               "pool.devices=cuda:0-3", "pool.tags={rollout: 3, train: 1}",
                                               "model.tokenizer="});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->train.lr, 3e-4);
  EXPECT_DOUBLE_EQ(r->algo.clip[1], 0.3);
  EXPECT_EQ(r->env.args, nlohmann::json({{"min_len", 5}}));
  EXPECT_EQ(r->pool.device_set.kind, DeviceSet::Kind::kCuda);
  EXPECT_EQ(r->pool.tags.rollout, 3);
  EXPECT_EQ(r->model.tokenizer, "byte");
  EXPECT_EQ(r->overrides.size(), 6u);

  std::vector<std::string> errors = Errors(LoadRecipe(path, {"train.lrr=1", "train.lr=abc", "nonsense"}));
  ASSERT_EQ(errors.size(), 3u) << absl::StrJoin(errors, "\n");
  EXPECT_EQ(errors[0], "<override>: `nonsense` is not of the form key.path=value");
  EXPECT_EQ(errors[1], "<override>: `train.lrr`: unknown key; did you mean `train.lr`?");
  EXPECT_EQ(errors[2], "<override>: `train.lr`: expected a number, got `abc`");
}

TEST_F(RecipeTest, OverrideCanSupplyRequiredKey) {
  std::string path = Write("r.yaml", "name: tiny\nenv: {plugin: \"builtin:letter_count\"}\n");
  EXPECT_FALSE(LoadRecipe(path, {}).ok());
  absl::StatusOr<Recipe> r = LoadRecipe(path, {"train.steps=5"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->train.steps, 5);
}

TEST_F(RecipeTest, YamlRoundTripGivesTheSameRecipe) {
  std::string path = Write("r.yaml", R"(name: "123"
seed: 42
model: {arch: llama, dtype: bfloat16, rope_theta: 500000, tie_embeddings: false}
algo: {name: reinforce_pp, clip: [0.1, 0.2], loss_agg: seq_sum_norm, kl_estimator: k2}
env: {plugin: "builtin:letter_count", args: {s: "007", f: 1.0, b: true, n: ~, list: [1, "x", 2.5], nested: {k: v}}}
train: {steps: 10, lr: 3.3e-5, betas: [0.8, 0.95]}
metrics: {bind: "0.0.0.0", port: 0}
)");
  absl::StatusOr<Recipe> a = LoadRecipe(path, {"rollout.top_p=0.95"});
  ASSERT_TRUE(a.ok()) << a.status();
  std::string yaml = RecipeToYaml(*a);
  EXPECT_THAT(yaml, HasSubstr("# Resolved recipe"));
  absl::StatusOr<Recipe> b = LoadRecipeFromString(yaml, "resolved.yaml");
  ASSERT_TRUE(b.ok()) << b.status() << "\n" << yaml;
  // Same text below the header line (which names the source).
  auto body = [](const std::string& y) { return y.substr(y.find('\n')); };
  EXPECT_EQ(body(RecipeToYaml(*b)), body(yaml));
  EXPECT_EQ(b->name, "123");
  EXPECT_EQ(b->model.arch, ModelArch::kLlama);
  EXPECT_DOUBLE_EQ(b->train.lr, 3.3e-5);
  EXPECT_DOUBLE_EQ(b->rollout.top_p, 0.95);
  EXPECT_EQ(b->env.args, a->env.args);
  EXPECT_TRUE(b->env.args["f"].is_number_float());
  EXPECT_TRUE(b->env.args["s"].is_string());
  EXPECT_EQ(b->run_dir, "runs/123");
}

TEST_F(RecipeTest, OverrideReplacesAWholeMapAndAKeyPathSetsOneEntry) {
  std::string path = Write("r.yaml", R"(name: tiny
env: {plugin: "builtin:letter_count", args: {min_len: 4, max_len: 12}}
train: {steps: 10}
)");
  absl::StatusOr<Recipe> r = LoadRecipe(path, {"env.args={}"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->env.args, nlohmann::json::object());
  r = LoadRecipe(path, {"env.args={max_len: 3}"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->env.args, nlohmann::json({{"max_len", 3}}));
  r = LoadRecipe(path, {"env.args.min_len=5"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->env.args, nlohmann::json({{"min_len", 5}, {"max_len", 12}}));
  r = LoadRecipe(path, {"env.args="});  // unset: the default (no args)
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->env.args, nlohmann::json::object());
  r = LoadRecipe(path, {"env.args={}", "env.args.k=1"});  // later overrides build on earlier ones
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->env.args, nlohmann::json({{"k", 1}}));
}

TEST_F(RecipeTest, RelativePluginPathsResolveFromTheRecipeThatWritesThem) {
  Write("plugins/env.so", "");
  Write("plugins/env.py", "");
  Write("base/b.yaml", "env: {plugin: ../plugins/env.so}\n");
  std::string run = Write("run.yaml", absl::StrCat("include: base/b.yaml\n", "name: tiny\ntrain: {steps: 1}\n"));
  absl::StatusOr<Recipe> r = LoadRecipe(run, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->env.plugin, Path("plugins/env.so"));  // absolute: the resolved recipe still works
  std::string py = Write("py.yaml", "name: tiny\nenv: {plugin: \"python:plugins/env.py\"}\ntrain: {steps: 1}\n");
  r = LoadRecipe(py, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->env.plugin, "python:" + Path("plugins/env.py"));
  absl::StatusOr<Recipe> again = LoadRecipeFromString(RecipeToYaml(*r), "/elsewhere/resolved.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->env.plugin, r->env.plugin);
  // A missing file names the resolved path; an override is relative to the working directory.
  std::string gone = Write("gone.yaml", "name: tiny\nenv: {plugin: \"python:nope.py\"}\ntrain: {steps: 1}\n");
  EXPECT_THAT(absl::StrJoin(Errors(LoadRecipe(gone, {})), "\n"),
              HasSubstr(absl::StrCat("Python file `", Path("nope.py"), "` does not exist")));
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  ASSERT_EQ(::chdir(dir_.c_str()), 0);
  r = LoadRecipe(run, {"env.plugin=plugins/env.so"});
  ASSERT_EQ(::chdir(cwd), 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->env.plugin, Path("plugins/env.so"));
}

TEST(DeviceSetTest, Spellings) {
  absl::StatusOr<DeviceSet> d = ParseDeviceSet("cpu:3");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kind, DeviceSet::Kind::kCpu);
  EXPECT_EQ(d->indices, (std::vector<int>{0, 1, 2}));
  d = ParseDeviceSet("cuda:2");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->indices, (std::vector<int>{2}));
  d = ParseDeviceSet("cuda:0-3");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->size(), 4);
  d = ParseDeviceSet("cuda:4,0-1");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->indices, (std::vector<int>{4, 0, 1}));
  EXPECT_FALSE(ParseDeviceSet("cpu:0").ok());
  EXPECT_FALSE(ParseDeviceSet("cuda:3-1").ok());
  EXPECT_FALSE(ParseDeviceSet("cuda:0,0").ok());
  EXPECT_FALSE(ParseDeviceSet("gpu:1").ok());
  EXPECT_FALSE(ParseDeviceSet("cuda:").ok());
}

TEST(EnumNameTest, MatchesRecipeSpelling) {
  EXPECT_EQ(EnumName(AlgoName::kReinforcePP), "reinforce_pp");
  EXPECT_EQ(EnumName(LossAgg::kSeqSumNorm), "seq_sum_norm");
  EXPECT_EQ(EnumName(WeightSyncBackend::kIpc), "ipc");
}

}  // namespace
}  // namespace tidal
