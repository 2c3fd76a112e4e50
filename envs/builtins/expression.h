// A small exact arithmetic-expression evaluator for the countdown and calculator environments.
//
// Grammar (whitespace anywhere between tokens):
//   expr   := term (('+' | '-') term)*
//   term   := unary (('*' | '/') unary)*
//   unary  := ('+' | '-') unary | atom
//   atom   := number | '(' expr ')'
//   number := digits ['.' digits]
// Values are exact rationals (int64 numerator/denominator, reduced); overflow, division by zero,
// nesting deeper than 64 levels and trailing input are errors with the character offset. The
// literals the expression used are reported, so countdown can check the number budget.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tidal::envs::builtins {

struct Rational {
  int64_t num = 0;
  int64_t den = 1;  // > 0, gcd(num, den) == 1
  bool is_integer() const { return den == 1; }
  bool operator==(const Rational&) const = default;
  // "42", "-7/3"
  std::string ToString() const;
  // "42", "2.5", "0.333333" (at most `digits` decimals, trailing zeros dropped)
  std::string ToDecimal(int digits = 6) const;
};

struct Evaluated {
  Rational value;
  std::vector<Rational> literals;  // in source order
};

absl::StatusOr<Evaluated> EvaluateExpression(std::string_view text);

// Parses "42", "-3.50", "1,000", "3/4", "-1 1/2" is NOT accepted (ambiguous). nullopt-like
// error when the text is not a single number.
absl::StatusOr<Rational> ParseNumber(std::string_view text);

}  // namespace tidal::envs::builtins
