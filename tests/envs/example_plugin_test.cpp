// The example plugin (envs/examples/reverse_string) built the way docs/plugins.md says, outside
// tidal's build, and driven through Environment like any recipe would.
#include <gtest/gtest.h>

#include <set>

#include "envs/environment.h"
#include "tests/envs/plugin_build.h"

namespace tidal::envs {
namespace {

using nlohmann::json;

TEST(ExamplePluginTest, ReverseStringBuildsSeparatelyAndPlays) {
  const std::string so =
      testing::BuildExamplePlugin("reverse_string", "libreverse_string.so");
  ASSERT_FALSE(so.empty());
  for (bool isolate : {false, true}) {
    EnvSpec spec{.plugin = so, .args = {{"min_len", 4}, {"max_len", 4}}, .isolate = isolate};
    auto env = Environment::Open(spec);
    ASSERT_TRUE(env.ok()) << env.status();
    std::set<std::string> train, eval;
    for (uint64_t seed = 0; seed < 50; ++seed) {
      auto task = (*env)->Reset(seed);
      ASSERT_TRUE(task.ok()) << task.status();
      const std::string word = task->prompt.substr(8, 4);  // "reverse abcd:"
      ASSERT_EQ(task->prompt, "reverse " + word + ":");
      const std::string reversed(word.rbegin(), word.rend());
      EXPECT_EQ(task->hidden["target"], reversed);
      ASSERT_TRUE(task->reference.has_value());
      auto step = (*env)->Step(*task->reference);
      ASSERT_TRUE(step.ok()) << step.status();
      EXPECT_EQ(step->reward, 1.0);
      auto wrong = (*env)->Score(*task, " " + word);  // not reversed
      ASSERT_TRUE(wrong.ok()) << wrong.status();
      if (word != reversed) EXPECT_LT(wrong->reward, 1.0);
      train.insert(word);
      auto e = (*env)->Reset(seed, Split::kEval);
      ASSERT_TRUE(e.ok());
      eval.insert(e->prompt.substr(8, 4));
    }
    for (const auto& w : eval) EXPECT_EQ(train.count(w), 0u) << w;
  }
}

// The long-tail option: about long_fraction of the tasks are longer than max_len, up to
// long_max_len; the rest keep [min_len, max_len].
TEST(ExamplePluginTest, LongFractionMakesALongTail) {
  const std::string so =
      testing::BuildExamplePlugin("reverse_string", "libreverse_string.so");
  ASSERT_FALSE(so.empty());
  auto env = Environment::Open(
      {.plugin = so, .args = {{"min_len", 3}, {"max_len", 6}, {"long_fraction", 0.1}, {"long_max_len", 48}}});
  ASSERT_TRUE(env.ok()) << env.status();
  int long_tasks = 0, longest = 0;
  const int n = 2000;
  for (uint64_t seed = 0; seed < n; ++seed) {
    auto task = (*env)->Reset(seed);
    ASSERT_TRUE(task.ok()) << task.status();
    const int len = static_cast<int>(task->hidden["target"].get<std::string>().size());
    ASSERT_GE(len, 3);
    ASSERT_LE(len, 48);
    long_tasks += len > 6;
    longest = std::max(longest, len);
    auto step = (*env)->Step(*task->reference);
    ASSERT_TRUE(step.ok()) << step.status();
    EXPECT_EQ(step->reward, 1.0);
  }
  EXPECT_GT(long_tasks, n * 0.07);
  EXPECT_LT(long_tasks, n * 0.13);
  EXPECT_GE(longest, 40);
  auto bad = Environment::Open({.plugin = so, .args = {{"max_len", 6}, {"long_max_len", 65}, {"long_fraction", 0.1}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("long_max_len"), std::string::npos) << bad.status();
}

TEST(ExamplePluginTest, RejectsBadArgs) {
  const std::string so =
      testing::BuildExamplePlugin("reverse_string", "libreverse_string.so");
  ASSERT_FALSE(so.empty());
  auto env = Environment::Open({.plugin = so, .args = {{"min_len", 9}, {"max_len", 2}}});
  ASSERT_FALSE(env.ok());
  EXPECT_NE(std::string(env.status().message()).find("args.min_len/max_len"), std::string::npos)
      << env.status();
}

}  // namespace
}  // namespace tidal::envs
