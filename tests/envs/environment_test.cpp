// Loading plugins through the C ABI: the good path for a built-in and an external .so, every
// bad-plugin case (each a clear error naming the plugin, the test process surviving), and
// isolation (a crashing or hanging plugin kills only its env-worker, which is restarted).
#include "envs/environment.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "tests/envs/plugin_build.h"

namespace tidal::envs {
namespace {

using nlohmann::json;
using testing::BuildTestPlugin;

bool Contains(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

absl::StatusOr<std::unique_ptr<Environment>> OpenPlugin(const std::string& path, json args = {},
                                                        bool isolate = false,
                                                        double timeout_s = 10.0) {
  EnvSpec spec;
  spec.plugin = path;
  spec.args = args.is_null() ? json::object() : args;
  spec.isolate = isolate;
  spec.timeout_s = timeout_s;
  return Environment::Open(spec);
}

TEST(EnvironmentTest, UnknownBuiltinListsTheKnownOnes) {
  auto env = OpenPlugin("builtin:no_such_env");
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(env.status(), "builtin:no_such_env")) << env.status();
  EXPECT_TRUE(Contains(env.status(), "letter_count")) << env.status();
}

TEST(EnvironmentTest, MissingFileIsNotFound) {
  auto env = OpenPlugin("/nonexistent/libenv.so");
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(env.status(), "'/nonexistent/libenv.so'")) << env.status();
}

TEST(EnvironmentTest, NotASharedLibraryShowsDlerror) {
  const std::string path = std::string(TIDAL_SOURCE_DIR) + "/tests/envs/plugins/misbehave.c";
  auto env = OpenPlugin(path);
  ASSERT_FALSE(env.ok());
  EXPECT_TRUE(Contains(env.status(), "dlopen failed")) << env.status();
}

TEST(EnvironmentTest, WrongAbiVersionIsRefused) {
  const std::string so = BuildTestPlugin("wrong_abi.c");
  ASSERT_FALSE(so.empty());
  auto env = OpenPlugin(so);
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(env.status(), "ABI version mismatch: plugin was built for tidal env ABI 99"))
      << env.status();
  EXPECT_TRUE(Contains(env.status(), so));
}

TEST(EnvironmentTest, MissingEntryPointIsNamed) {
  const std::string so = BuildTestPlugin("no_entry.c");
  ASSERT_FALSE(so.empty());
  auto env = OpenPlugin(so);
  ASSERT_FALSE(env.ok());
  EXPECT_TRUE(Contains(env.status(), "missing symbol 'tidal_env_plugin_v1'")) << env.status();
  EXPECT_TRUE(Contains(env.status(), so));
}

TEST(EnvironmentTest, ExternalPluginRunsAnEpisode) {
  const std::string so = BuildTestPlugin("misbehave.c");  // well-behaved unless asked
  ASSERT_FALSE(so.empty());
  auto env = OpenPlugin(so);
  ASSERT_TRUE(env.ok()) << env.status();
  auto task = (*env)->Reset(1);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->prompt, "say ok 1:");
  EXPECT_FALSE(task->reference.has_value());
  auto step = (*env)->Step(" ok");
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->reward, 1.0);
  EXPECT_TRUE(step->done);
  auto score = (*env)->Score(*task, " nope");
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_EQ(score->reward, 0.0);
}

TEST(EnvironmentTest, ExceptionAcrossTheAbiBecomesAnError) {
  const std::string so = BuildTestPlugin("throws.cpp");
  ASSERT_FALSE(so.empty());
  auto env = OpenPlugin(so);
  ASSERT_TRUE(env.ok()) << env.status();
  auto task = (*env)->Reset(1);
  ASSERT_FALSE(task.ok());
  EXPECT_TRUE(Contains(task.status(), "reset() threw an exception across the C ABI: boom"))
      << task.status();
  // The instance is still usable for calls that do not throw.
  auto score = (*env)->Score(json{{"want", "ok"}}, "ok");
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_EQ(score->reward, 1.0);
}

TEST(EnvironmentTest, CreateErrorIsInvalidArgumentWithThePluginsMessage) {
  const std::string so = BuildTestPlugin("throws.cpp");
  ASSERT_FALSE(so.empty());
  auto env = OpenPlugin(so, {{"reject", true}});
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(env.status(), "args.reject: this plugin refuses to start"))
      << env.status();
}

TEST(EnvironmentTest, InvalidJsonAndMissingKeysAreErrors) {
  const std::string so = BuildTestPlugin("bad_json.c");
  ASSERT_FALSE(so.empty());
  for (bool isolate : {false, true}) {
    auto env = OpenPlugin(so, {}, isolate);
    ASSERT_TRUE(env.ok()) << env.status();
    auto task = (*env)->Reset(1);
    ASSERT_FALSE(task.ok());
    EXPECT_TRUE(Contains(task.status(), "reset() returned invalid JSON: {\"prompt\""))
        << task.status();
    EXPECT_TRUE(Contains(task.status(), so));
    auto score = (*env)->Score(json::object(), "x");
    ASSERT_FALSE(score.ok());
    EXPECT_TRUE(Contains(score.status(), "score() returned no finite number \"reward\""))
        << score.status();
  }
}

// Finite but huge rewards pass a finiteness check yet overflow every advantage of their group:
// env.reward_range rejects them (and inf, NaN and non-numbers) per call, naming the key.
TEST(EnvironmentTest, RewardsOutsideTheRangeAreRejectedWithTheKey) {
  const std::string so = BuildTestPlugin("bad_reward.c");
  ASSERT_FALSE(so.empty());
  struct Case {
    const char* bad;
    const char* why;
  };
  for (const Case& c : {Case{"huge", "a reward of 1e+308, outside env.reward_range [-1e+06, 1e+06]"},
                        Case{"neghuge", "a reward of -1e+308, outside env.reward_range"},
                        Case{"inf", "invalid JSON"},  // nlohmann refuses a number that overflows
                        Case{"nan", "invalid JSON"},
                        Case{"nanstr", "no finite number \"reward\""}}) {
    for (bool isolate : {false, true}) {
      auto env = OpenPlugin(so, {{"bad", c.bad}, {"every", 2}}, isolate);
      ASSERT_TRUE(env.ok()) << env.status();
      auto good = (*env)->Score(json::object(), "ab");
      ASSERT_TRUE(good.ok()) << good.status();
      EXPECT_EQ(good->reward, 1.0);
      auto bad = (*env)->Score(json::object(), "ab");
      ASSERT_FALSE(bad.ok()) << c.bad << " passed as " << bad->reward;
      EXPECT_TRUE(Contains(bad.status(), c.why)) << bad.status();
      EXPECT_TRUE(Contains(bad.status(), so)) << bad.status();
    }
  }
  // A narrower range is honoured: 1.0 is outside [-0.5, 0.5].
  EnvSpec spec;
  spec.plugin = so;
  spec.args = {{"bad", "huge"}, {"every", 1000}};
  spec.reward_range = {-0.5, 0.5};
  auto env = Environment::Open(spec);
  ASSERT_TRUE(env.ok()) << env.status();
  auto r = (*env)->Score(json::object(), "ab");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "outside env.reward_range [-0.5, 0.5]")) << r.status();
  EXPECT_EQ(RewardRangeProblem(0.5, {-0.5, 0.5}), "");
  EXPECT_NE(RewardRangeProblem(std::nan(""), {-0.5, 0.5}), "");
}

TEST(EnvironmentTest, InProcessTimeoutAbandonsTheInstance) {
  const std::string so = BuildTestPlugin("misbehave.c");
  ASSERT_FALSE(so.empty());
  auto env = OpenPlugin(so, {{"mode", "hang"}, {"at", "reset"}}, /*isolate=*/false, 0.3);
  ASSERT_TRUE(env.ok()) << env.status();
  ASSERT_TRUE((*env)->Reset(1).ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto task = (*env)->Reset(13);  // hangs
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(task.ok());
  EXPECT_EQ(task.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(Contains(task.status(), "reset() exceeded its time limit of 0.3 s"))
      << task.status();
  EXPECT_LT(waited, 2.0);
  auto after = (*env)->Reset(1);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
  // Note: the spinning thread keeps one core busy until the test process exits; that is the
  // documented price of in-process plugins (isolate kills it instead, see below).
}

TEST(EnvironmentTest, IsolatedTimeoutKillsAndRestartsTheWorker) {
  const std::string so = BuildTestPlugin("misbehave.c");
  ASSERT_FALSE(so.empty());
  auto env = OpenPlugin(so, {{"mode", "hang"}, {"at", "reset"}}, /*isolate=*/true, 0.5);
  ASSERT_TRUE(env.ok()) << env.status();
  auto first = (*env)->Reset(1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->prompt, "say ok 1:");
  auto task = (*env)->Reset(13);
  ASSERT_FALSE(task.ok());
  EXPECT_EQ(task.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(Contains(task.status(), "killed")) << task.status();
  // Next call: a fresh worker, a fresh instance (its reset counter starts again).
  auto again = (*env)->Reset(2);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->prompt, "say ok 1:");
}

class CrashTest : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(CrashTest, IsolatedCrashFailsOneCallAndTheWorkerRestarts) {
  const auto [mode, signal_text] = GetParam();
  const std::string so = BuildTestPlugin("misbehave.c");
  ASSERT_FALSE(so.empty());
  auto env = OpenPlugin(so, {{"mode", mode}, {"at", "step"}}, /*isolate=*/true);
  ASSERT_TRUE(env.ok()) << env.status();
  ASSERT_TRUE((*env)->Reset(1).ok());
  auto step = (*env)->Step("crash now");
  ASSERT_FALSE(step.ok());
  EXPECT_TRUE(Contains(step.status(), signal_text)) << step.status();
  EXPECT_TRUE(Contains(step.status(), "during step()")) << step.status();
  EXPECT_TRUE(Contains(step.status(), so));
  // This process is alive (we are here) and the environment works again.
  auto task = (*env)->Reset(2);
  ASSERT_TRUE(task.ok()) << task.status();
  auto ok = (*env)->Step(" ok");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->reward, 1.0);
}

INSTANTIATE_TEST_SUITE_P(Modes, CrashTest,
                         ::testing::Values(std::make_pair("segv", "signal 11"),
                                           std::make_pair("abort", "signal 6"),
                                           std::make_pair("exit", "exited with status 3")));

TEST(EnvironmentTest, IsolatedBuiltinMatchesInProcess) {
  EnvSpec spec{.plugin = "builtin:letter_count", .args = {{"max_len", 5}}};
  auto local = Environment::Open(spec);
  spec.isolate = true;
  auto remote = Environment::Open(spec);
  ASSERT_TRUE(local.ok() && remote.ok()) << local.status() << remote.status();
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto a = (*local)->Reset(seed), b = (*remote)->Reset(seed);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->prompt, b->prompt);
    EXPECT_EQ(a->hidden, b->hidden);
    auto sa = (*local)->Step(*a->reference), sb = (*remote)->Step(*b->reference);
    ASSERT_TRUE(sa.ok() && sb.ok());
    EXPECT_EQ(sa->reward, sb->reward);
  }
}

TEST(EnvironmentTest, IsolatedOpenReportsCreateErrors) {
  EnvSpec spec{.plugin = "builtin:letter_count", .args = {{"bogus", 1}}, .isolate = true};
  auto env = Environment::Open(spec);
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(env.status(), "args.bogus: unknown key")) << env.status();
}

TEST(EnvSpecTest, ParsesTheRecipeSection) {
  auto spec = EnvSpecFromJson(
      {{"plugin", "builtin:letter_count"}, {"args", {{"min_len", 4}}}, {"isolate", true},
       {"timeout_s", 2.5}});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->plugin, "builtin:letter_count");
  EXPECT_EQ(spec->args["min_len"], 4);
  EXPECT_TRUE(spec->isolate);
  EXPECT_EQ(spec->timeout_s, 2.5);
  auto bad = EnvSpecFromJson({{"plugin", "builtin:x"}, {"isloate", true}});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status(), "env.isloate: unknown key")) << bad.status();
  EXPECT_FALSE(EnvSpecFromJson({{"args", json::object()}}).ok());
  auto range = EnvSpecFromJson({{"plugin", "builtin:x"}, {"reward_range", {-2, 3}}});
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(range->reward_range[0], -2);
  EXPECT_EQ(range->reward_range[1], 3);
  EXPECT_FALSE(EnvSpecFromJson({{"plugin", "builtin:x"}, {"reward_range", {3, -2}}}).ok());
}

}  // namespace
}  // namespace tidal::envs
