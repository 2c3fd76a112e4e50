#include <gtest/gtest.h>

#include "tests/envs/env_test_util.h"

namespace tidal::envs {
namespace {

using nlohmann::json;
using testing::OpenBuiltin;

std::string Call(const std::string& expr) {
  return "<tool_call>" + json{{"name", "calc"}, {"arguments", {{"expr", expr}}}}.dump() +
         "</tool_call>";
}

TEST(ToolCalcTest, MultiTurnEpisodeWithToolCalls) {
  auto env = OpenBuiltin("tool_calc");
  ASSERT_NE(env, nullptr);
  auto t = env->Reset(3);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(t->messages.has_value());
  EXPECT_EQ((*t->messages)[0]["role"], "system");
  const std::string expr = t->hidden["expr"];
  const std::string answer = t->hidden["answer"];
  EXPECT_NE(t->prompt.find("What is " + expr + "?"), std::string::npos);

  // Turn 1: a tool call gets the exact result back, episode continues.
  auto s1 = env->Step("Let me compute. " + Call(expr));
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_FALSE(s1->done);
  EXPECT_EQ(s1->observation, "<tool_result>" + answer + "</tool_result>");
  EXPECT_EQ(s1->observation_role, "tool");
  EXPECT_EQ(s1->reward, 0.0);
  // Turn 2: a malformed call is an error observation, not the end.
  auto s2 = env->Step("<tool_call>{\"name\":\"calc\",\"arguments\":{\"expr\":\"1+\"}}</tool_call>");
  ASSERT_TRUE(s2.ok());
  EXPECT_FALSE(s2->done);
  EXPECT_EQ(s2->observation.rfind("<tool_result>error: expression:", 0), 0u) << s2->observation;
  auto s3 = env->Step("<tool_call>{\"name\":\"search\"}</tool_call>");
  ASSERT_TRUE(s3.ok());
  EXPECT_NE(s3->observation.find("unknown tool 'search'"), std::string::npos);
  // Turn 4: the answer ends the episode with the reward.
  auto s4 = env->Step("<answer>" + answer + "</answer>");
  ASSERT_TRUE(s4.ok());
  EXPECT_TRUE(s4->done);
  EXPECT_EQ(s4->reward, 1.0);
  EXPECT_EQ(s4->info["tool_calls"], 3);
}

TEST(ToolCalcTest, WrongAnswerAndTurnLimit) {
  auto env = OpenBuiltin("tool_calc", {{"max_turns", 2}});
  ASSERT_NE(env, nullptr);
  auto t = env->Reset(5);
  ASSERT_TRUE(t.ok());
  auto wrong = env->Step("<answer>1</answer>");
  ASSERT_TRUE(wrong.ok());
  EXPECT_TRUE(wrong->done);
  EXPECT_EQ(wrong->reward, 0.0);

  ASSERT_TRUE(env->Reset(6).ok());
  auto c1 = env->Step(Call("1+1"));
  ASSERT_TRUE(c1.ok());
  EXPECT_FALSE(c1->done);
  auto c2 = env->Step(Call("2+2"));  // second turn is the last one
  ASSERT_TRUE(c2.ok());
  EXPECT_TRUE(c2->done);
  EXPECT_EQ(c2->reward, 0.0);
  EXPECT_EQ(c2->info["verdict"], "out of turns");
  EXPECT_FALSE(env->Step("<answer>4</answer>").ok());  // episode over
}

TEST(ToolCalcTest, ScoreJudgesAWholeTranscript) {
  auto env = OpenBuiltin("tool_calc", {{"tool_call_cost", 0.1}});
  ASSERT_NE(env, nullptr);
  auto t = env->Reset(9);
  ASSERT_TRUE(t.ok());
  const auto demo = t->hidden["demo_turns"];
  const std::string transcript = demo[0].get<std::string>() + "\n<tool_result>" +
                                 t->hidden["answer"].get<std::string>() + "</tool_result>\n" +
                                 demo[1].get<std::string>();
  auto s = env->Score(*t, transcript);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->reward, 1.0);
  // Playing the demo through Step costs one tool call.
  auto s1 = env->Step(demo[0].get<std::string>());
  ASSERT_TRUE(s1.ok());
  auto s2 = env->Step(demo[1].get<std::string>());
  ASSERT_TRUE(s2.ok());
  EXPECT_TRUE(s2->done);
  EXPECT_DOUBLE_EQ(s2->reward, 0.9);
}

}  // namespace
}  // namespace tidal::envs
