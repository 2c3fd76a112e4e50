#include "envs/builtins/expression.h"

#include <gtest/gtest.h>

namespace tidal::envs::builtins {
namespace {

Rational Eval(const std::string& s) {
  auto v = EvaluateExpression(s);
  EXPECT_TRUE(v.ok()) << s << ": " << v.status();
  return v.ok() ? v->value : Rational{-999999, 1};
}

TEST(ExpressionTest, PrecedenceParenthesesAndUnary) {
  EXPECT_EQ(Eval("1+2*3"), (Rational{7, 1}));
  EXPECT_EQ(Eval("(1+2)*3"), (Rational{9, 1}));
  EXPECT_EQ(Eval("10-4-3"), (Rational{3, 1}));  // left associative
  EXPECT_EQ(Eval("100/10/5"), (Rational{2, 1}));
  EXPECT_EQ(Eval(" - ( 2 - 5 ) * -3 "), (Rational{-9, 1}));
  EXPECT_EQ(Eval("7/2"), (Rational{7, 2}));
  EXPECT_EQ(Eval("2.5*4"), (Rational{10, 1}));
  EXPECT_EQ(Eval("1/3+1/6"), (Rational{1, 2}));
}

TEST(ExpressionTest, ReportsLiteralsInOrder) {
  auto v = EvaluateExpression("(25+50)*3-7");
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->literals.size(), 4u);
  EXPECT_EQ(v->literals[0].num, 25);
  EXPECT_EQ(v->literals[3].num, 7);
}

TEST(ExpressionTest, ErrorsSayWhereAndWhy) {
  const std::pair<const char*, const char*> bad[] = {
      {"1/0", "division by zero"},     {"1/(2-2)", "division by zero"},
      {"(1+2", "expected ')'"},        {"1+", "unexpected end"},
      {"2 3", "unexpected '3'"},       {"1+a", "expected a number"},
      {"", "unexpected end"},          {"99999999999999999999", "out of range"},
      {"9223372036854775807*2", "out of range"}, {"1.", "expected digits after '.'"},
  };
  for (const auto& [text, why] : bad) {
    auto v = EvaluateExpression(text);
    ASSERT_FALSE(v.ok()) << text;
    EXPECT_NE(std::string(v.status().message()).find(why), std::string::npos)
        << text << ": " << v.status();
  }
  EXPECT_FALSE(EvaluateExpression(std::string(200, '(') + "1" + std::string(200, ')')).ok());
}

TEST(ExpressionTest, RationalFormatting) {
  EXPECT_EQ((Rational{7, 2}).ToString(), "7/2");
  EXPECT_EQ((Rational{7, 2}).ToDecimal(), "3.5");
  EXPECT_EQ((Rational{-1, 3}).ToDecimal(), "-0.333333");
  EXPECT_EQ((Rational{2, 3}).ToDecimal(2), "0.67");
  EXPECT_EQ((Rational{-42, 1}).ToDecimal(), "-42");
}

TEST(ExpressionTest, ParseNumberNormalises) {
  EXPECT_EQ(*ParseNumber("1,000"), (Rational{1000, 1}));
  EXPECT_EQ(*ParseNumber("3.50"), (Rational{7, 2}));
  EXPECT_EQ(*ParseNumber("-3/4"), (Rational{-3, 4}));
  EXPECT_EQ(*ParseNumber("6/8"), (Rational{3, 4}));
  EXPECT_FALSE(ParseNumber("1+2").ok());
  EXPECT_FALSE(ParseNumber("abc").ok());
  EXPECT_FALSE(ParseNumber("1/0").ok());
}

}  // namespace
}  // namespace tidal::envs::builtins
