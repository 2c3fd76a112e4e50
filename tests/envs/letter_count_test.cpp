#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "envs/environment.h"

namespace tidal::envs {
namespace {

using nlohmann::json;

std::unique_ptr<Environment> Open(json args = json::object()) {
  EnvSpec spec;
  spec.plugin = "builtin:letter_count";
  spec.args = std::move(args);
  auto env = Environment::Open(spec);
  EXPECT_TRUE(env.ok()) << env.status();
  return env.ok() ? std::move(*env) : nullptr;
}

TEST(LetterCountTest, TaskMatchesItsHiddenCountAndReference) {
  auto env = Open();
  ASSERT_NE(env, nullptr);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    auto task = env->Reset(seed);
    ASSERT_TRUE(task.ok()) << task.status();
    const std::string word = task->hidden["word"];
    const std::string letter = task->hidden["letter"];
    ASSERT_EQ(letter.size(), 1u);
    EXPECT_GE(word.size(), 3u);
    EXPECT_LE(word.size(), 8u);
    EXPECT_EQ(task->prompt, "count " + letter + " in " + word + ":");
    const int64_t count = std::count(word.begin(), word.end(), letter[0]);
    EXPECT_EQ(task->hidden["count"].get<int64_t>(), count);
    ASSERT_TRUE(task->reference.has_value());
    EXPECT_EQ(*task->reference, " " + std::to_string(count));
    ASSERT_TRUE(task->messages.has_value());
    EXPECT_EQ((*task->messages)[0]["content"], task->prompt);
    // The reference is a correct answer by construction.
    auto s = env->Score(*task, *task->reference);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->reward, 1.0);
  }
}

TEST(LetterCountTest, ScoresTheFirstIntegerOfTheResponse) {
  auto env = Open();
  ASSERT_NE(env, nullptr);
  const json hidden = {{"word", "strawberry"}, {"letter", "r"}, {"count", 3}};
  const std::pair<const char*, double> cases[] = {
      {" 3", 1.0},       {"3", 1.0},   {" 3 times", 1.0}, {"it is 3.", 1.0}, {" 3\n 4", 1.0},
      {" 4", 0.0},       {" 33", 0.0}, {"three", 0.0},    {"", 0.0},         {" -3", 0.0},
      {" 2, no 3", 0.0},
  };
  for (const auto& [response, reward] : cases) {
    auto s = env->Score(hidden, response);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->reward, reward) << "response '" << response << "'";
  }
  auto s = env->Score(hidden, " 4");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->info["expected"], 3);
  EXPECT_EQ(s->info["parsed"], 4);
}

TEST(LetterCountTest, StepEndsTheSingleTurnEpisodeWithTheReward) {
  auto env = Open();
  ASSERT_NE(env, nullptr);
  auto task = env->Reset(7);
  ASSERT_TRUE(task.ok());
  auto step = env->Step(*task->reference);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_TRUE(step->done);
  EXPECT_EQ(step->reward, 1.0);
  // The episode is over: another step is a plugin error naming the plugin, not a crash.
  auto again = env->Step(" 1");
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("builtin:letter_count"), std::string::npos);
}

TEST(LetterCountTest, DeterministicPerSeed) {
  auto a = Open(), b = Open();
  ASSERT_TRUE(a && b);
  for (uint64_t seed : {0ull, 1ull, 12345ull, ~0ull}) {
    auto ta = a->Reset(seed), tb = b->Reset(seed);
    ASSERT_TRUE(ta.ok() && tb.ok());
    EXPECT_EQ(ta->prompt, tb->prompt);
  }
}

TEST(LetterCountTest, EvalSplitIsDisjointFromTrain) {
  // A small task space so that the two splits would collide often if they were not disjoint.
  auto env = Open({{"min_len", 2}, {"max_len", 2}, {"alphabet", "abcd"}, {"eval_fraction", 0.3}});
  ASSERT_NE(env, nullptr);
  std::set<std::string> train, eval;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    auto t = env->Reset(seed, Split::kTrain);
    auto e = env->Reset(seed, Split::kEval);
    ASSERT_TRUE(t.ok() && e.ok());
    train.insert(t->prompt);
    eval.insert(e->prompt);
  }
  EXPECT_GT(eval.size(), 3u);
  EXPECT_GT(train.size(), eval.size());
  for (const auto& p : eval) EXPECT_EQ(train.count(p), 0u) << p << " is in both splits";
  // 4*4 words x 4 letters = 64 tasks: together the splits cover most of the space.
  EXPECT_GT(train.size() + eval.size(), 50u);
}

TEST(LetterCountTest, TemplatesWordsAndLettersAreConfigurable) {
  auto env = Open({{"words", {"strawberry", "banana"}},
                   {"letters", "rn"},
                   {"letter_in_word_prob", 1.0},
                   {"prompt_template", "How many times does the letter '{letter}' appear in "
                                       "'{word}'?"},
                   {"answer_template", " {count}."},
                   {"eval_fraction", 0.0}});
  ASSERT_NE(env, nullptr);
  std::set<std::string> prompts;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    auto t = env->Reset(seed);
    ASSERT_TRUE(t.ok()) << t.status();
    prompts.insert(t->prompt + "|" + *t->reference);
  }
  // Letter drawn from the word and restricted to "rn": r in strawberry, n in banana.
  EXPECT_EQ(prompts, (std::set<std::string>{
                         "How many times does the letter 'r' appear in 'strawberry'?| 3.",
                         "How many times does the letter 'n' appear in 'banana'?| 2."}));
}

TEST(LetterCountTest, RejectsBadArgsNamingTheKey) {
  const std::pair<json, const char*> bad[] = {
      {{{"min_len", 5}, {"max_len", 2}}, "args.max_len"},
      {{{"min_lenn", 5}}, "args.min_lenn: unknown key"},
      {{{"alphabet", "a b"}}, "args.alphabet"},
      {{{"prompt_template", "count {letter}:"}}, "args.prompt_template"},
      {{{"answer_template", "yes"}}, "args.answer_template"},
      {{{"max_len", "8"}}, "args.max_len: expected an integer"},
      {{{"eval_fraction", 1.5}}, "args.eval_fraction"},
  };
  for (const auto& [args, expect] : bad) {
    EnvSpec spec{.plugin = "builtin:letter_count", .args = args};
    auto env = Environment::Open(spec);
    ASSERT_FALSE(env.ok()) << args.dump();
    EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(env.status().message().find(expect), std::string::npos) << env.status();
    EXPECT_NE(env.status().message().find("builtin:letter_count"), std::string::npos);
  }
}

TEST(LetterCountTest, ImpossibleSplitIsAClearError) {
  // One task in total, and eval asks for a split that cannot contain it (or vice versa).
  auto env = Open({{"words", {"aa"}}, {"letters", "a"}, {"eval_fraction", 0.0}});
  ASSERT_NE(env, nullptr);
  auto e = env->Reset(1, Split::kEval);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("no eval task found"), std::string::npos) << e.status();
}

}  // namespace
}  // namespace tidal::envs
