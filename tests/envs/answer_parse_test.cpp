#include "envs/builtins/answer_parse.h"

#include <gtest/gtest.h>

namespace tidal::envs::builtins {
namespace {

TEST(AnswerParseTest, FirstInteger) {
  EXPECT_EQ(FirstInteger(" 3"), 3);
  EXPECT_EQ(FirstInteger("it is -12."), -12);
  EXPECT_EQ(FirstInteger("a1b2"), 1);
  EXPECT_EQ(FirstInteger("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(FirstInteger("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(FirstInteger("9223372036854775808"), std::nullopt);  // overflow, not wrapped
  EXPECT_EQ(FirstInteger("none"), std::nullopt);
}

TEST(AnswerParseTest, ExtractFinalAnswerRules) {
  EXPECT_EQ(ExtractFinalAnswer("36 - 9 = 27 pencils.\n#### 27"), "27");
  EXPECT_EQ(ExtractFinalAnswer("#### 1,000\n"), "1,000");
  EXPECT_EQ(ExtractFinalAnswer("so \\boxed{\\frac{5}{8}} is it; 3 and 4"), "\\frac{5}{8}");
  EXPECT_EQ(ExtractFinalAnswer("first 2 then \\boxed{3} then \\boxed{4}"), "4");
  EXPECT_EQ(ExtractFinalAnswer("The answer is 42 apples, from 6 * 7."), "42");
  EXPECT_EQ(ExtractFinalAnswer("Final answer: $3.50"), "3.50");
  EXPECT_EQ(ExtractFinalAnswer("6 * 2.5 = 15 dollars."), "15");
  EXPECT_EQ(ExtractFinalAnswer("it dropped to -7 degrees"), "-7");
  EXPECT_EQ(ExtractFinalAnswer("5/8 of the pizza"), "5/8");
  EXPECT_EQ(ExtractFinalAnswer("no digits here"), std::nullopt);
}

TEST(AnswerParseTest, NumbersCompareAfterNormalisation) {
  EXPECT_TRUE(AnswersMatch("1,000", "1000"));
  EXPECT_TRUE(AnswersMatch("3.5", "3.50"));
  EXPECT_TRUE(AnswersMatch("7/2", "3.5"));
  EXPECT_TRUE(AnswersMatch("30", "$30"));
  EXPECT_TRUE(AnswersMatch("25", "25%"));
  EXPECT_TRUE(AnswersMatch("15", "15."));
  EXPECT_TRUE(AnswersMatch("5/8", "\\frac{5}{8}"));
  EXPECT_TRUE(AnswersMatch("0.625", "\\dfrac{5}{8}"));
  EXPECT_TRUE(AnswersMatch("12", "12\\text{ cm}"));
  EXPECT_FALSE(AnswersMatch("27", "28"));
  EXPECT_FALSE(AnswersMatch("1.75", "1.7"));
  EXPECT_FALSE(AnswersMatch("-7", "7"));
  EXPECT_FALSE(AnswersMatch("12", "twelve"));
  EXPECT_TRUE(AnswersMatch("Paris", " paris."));
}

}  // namespace
}  // namespace tidal::envs::builtins
