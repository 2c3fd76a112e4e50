#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "tests/envs/env_test_util.h"

namespace tidal::envs {
namespace {

using nlohmann::json;
using testing::OpenBuiltin;
using testing::Reward;

const std::string kSample = std::string(TIDAL_SOURCE_DIR) + "/envs/data/gsm8k_sample.jsonl";

TEST(MathAnswerTest, SampleDataReferencesScoreOne) {
  auto env = OpenBuiltin("math_answer", {{"path", kSample}, {"eval_fraction", 0.0}});
  ASSERT_NE(env, nullptr);
  std::set<std::string> answers;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    auto t = env->Reset(seed);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->prompt.rfind("Question: ", 0), 0u);
    EXPECT_NE(t->prompt.find("\nAnswer:"), std::string::npos);
    answers.insert(t->hidden["answer"]);
    EXPECT_EQ(Reward(*env, t->hidden, *t->reference), 1.0) << *t->reference;
  }
  // The sample's final answers, as extracted from "#### ...".
  EXPECT_EQ(answers, (std::set<std::string>{"27", "15", "10,000", "5/8", "1.75", "-7", "8",
                                            "30"}));
}

TEST(MathAnswerTest, ResponsesAreNormalisedBeforeComparing) {
  auto env = OpenBuiltin("math_answer", {{"path", kSample}});
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(Reward(*env, {{"answer", "10,000"}}, "It makes 10000 bolts."), 1.0);
  EXPECT_EQ(Reward(*env, {{"answer", "10,000"}}, "#### 10,000"), 1.0);
  EXPECT_EQ(Reward(*env, {{"answer", "1.75"}}, "each is \\boxed{\\frac{7}{4}} m"), 1.0);
  EXPECT_EQ(Reward(*env, {{"answer", "5/8"}}, "The answer is 0.625 of the pizza."), 1.0);
  EXPECT_EQ(Reward(*env, {{"answer", "15"}}, "They cost $15.00."), 1.0);
  EXPECT_EQ(Reward(*env, {{"answer", "-7"}}, "It is 7 degrees colder: 4 - 11 = -7"), 1.0);
  EXPECT_EQ(Reward(*env, {{"answer", "27"}}, "36 - 9 = 26\n#### 26"), 0.0);
  EXPECT_EQ(Reward(*env, {{"answer", "27"}}, "I do not know"), 0.0);
  auto s = env->Score(json{{"answer", "27"}}, "#### 26");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->info["extracted"], "26");
}

TEST(MathAnswerTest, HeldOutSplitFromAnEvalFileOrByHash) {
  const auto dir = std::filesystem::temp_directory_path() / ("math_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "eval.jsonl")
        << R"({"q": "What is 2+2?", "a": "#### 4"})" << "\n"
        << R"({"q": "What is 3+3?", "a": "#### 6"})" << "\n";
  }
  // The train file uses other keys: it must be rejected naming the line and key.
  auto bad = Environment::Open({.plugin = "builtin:math_answer",
                                .args = {{"path", kSample}, {"question_key", "q"}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("gsm8k_sample.jsonl:1: no string \"q\""),
            std::string::npos)
      << bad.status();

  // Both files in the same format: eval draws only from the eval file.
  {
    std::ofstream(dir / "train.jsonl") << R"({"q": "What is 1+1?", "a": "#### 2"})" << "\n";
  }
  auto split = OpenBuiltin("math_answer", {{"path", (dir / "train.jsonl").string()},
                                           {"eval_path", (dir / "eval.jsonl").string()},
                                           {"question_key", "q"}, {"answer_key", "a"}});
  ASSERT_NE(split, nullptr);
  for (uint64_t seed = 0; seed < 10; ++seed) {
    auto e = split->Reset(seed, Split::kEval);
    auto t = split->Reset(seed, Split::kTrain);
    ASSERT_TRUE(e.ok() && t.ok());
    EXPECT_NE(e->hidden["answer"], "2");
    EXPECT_EQ(t->hidden["answer"], "2");
  }
  std::filesystem::remove_all(dir);

  // Without eval_path: hash partition, disjoint by question text.
  auto hashed = OpenBuiltin("math_answer", {{"path", kSample}, {"eval_fraction", 0.4}});
  ASSERT_NE(hashed, nullptr);
  std::set<std::string> train, eval;
  for (uint64_t seed = 0; seed < 80; ++seed) {
    auto t = hashed->Reset(seed), e = hashed->Reset(seed, Split::kEval);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE(e.ok()) << e.status();
    train.insert(t->prompt);
    eval.insert(e->prompt);
  }
  for (const auto& p : eval) EXPECT_EQ(train.count(p), 0u);
  EXPECT_EQ(train.size() + eval.size(), 8u);
}

TEST(MathAnswerTest, MissingPathIsAClearError) {
  auto env = Environment::Open({.plugin = "builtin:math_answer"});
  ASSERT_FALSE(env.ok());
  EXPECT_NE(std::string(env.status().message()).find("args.path: required"), std::string::npos);
  auto missing = Environment::Open(
      {.plugin = "builtin:math_answer", .args = {{"path", "/nonexistent.jsonl"}}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("cannot open '/nonexistent.jsonl'"),
            std::string::npos);
}

}  // namespace
}  // namespace tidal::envs
