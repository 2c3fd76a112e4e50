#include <gtest/gtest.h>

#include "tests/envs/env_test_util.h"

namespace tidal::envs {
namespace {

using testing::OpenBuiltin;
using testing::Reward;

TEST(ArithmeticTest, ReferenceIsTheExactValue) {
  auto env = OpenBuiltin("arithmetic", {{"min_digits", 2}, {"max_digits", 4}, {"ops", "+-*"},
                                        {"operands", 3}});
  ASSERT_NE(env, nullptr);
  for (uint64_t seed = 0; seed < 100; ++seed) {
    auto t = env->Reset(seed);
    ASSERT_TRUE(t.ok()) << t.status();
    const std::string expr = t->hidden["expr"];
    EXPECT_EQ(t->prompt, expr + "=");
    // Recompute independently: * binds tighter than + and -.
    std::vector<int64_t> terms{0};
    std::vector<char> signs{'+'};
    int64_t cur = 0;
    char mul_pending = 0;
    size_t i = 0;
    int64_t product = 1;
    char sign = '+';
    int64_t total = 0;
    while (i < expr.size()) {
      cur = 0;
      while (i < expr.size() && isdigit(expr[i])) cur = cur * 10 + (expr[i++] - '0');
      product = mul_pending ? product * cur : cur;
      mul_pending = 0;
      if (i < expr.size() && expr[i] == '*') {
        mul_pending = '*';
        ++i;
        continue;
      }
      total += sign == '+' ? product : -product;
      if (i < expr.size()) sign = expr[i++];
    }
    EXPECT_EQ(t->hidden["answer"].get<int64_t>(), total) << expr;
    EXPECT_EQ(*t->reference, " " + std::to_string(total));
    EXPECT_EQ(Reward(*env, t->hidden, *t->reference), 1.0);
    EXPECT_EQ(Reward(*env, t->hidden, " " + std::to_string(total + 1)), 0.0);
  }
}

TEST(ArithmeticTest, NonNegativeWhenAsked) {
  auto env = OpenBuiltin("arithmetic", {{"ops", "-"}, {"allow_negative", false},
                                        {"operands", 3}});
  ASSERT_NE(env, nullptr);
  for (uint64_t seed = 0; seed < 100; ++seed) {
    auto t = env->Reset(seed);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_GE(t->hidden["answer"].get<int64_t>(), 0) << t->prompt;
  }
}

TEST(ArithmeticTest, RejectsBadOps) {
  auto env = Environment::Open({.plugin = "builtin:arithmetic", .args = {{"ops", "+^"}}});
  ASSERT_FALSE(env.ok());
  EXPECT_NE(std::string(env.status().message()).find("args.ops"), std::string::npos);
}

}  // namespace
}  // namespace tidal::envs
