// Answer extraction shared by the built-in verifiers.
//
// FirstInteger: the first run of ASCII digits in the text, with a '-' directly before it taken
// as its sign ("  3", "3 times", "it is -12." -> 3, 3, -12). Digits beyond int64 range make the
// answer unparseable (nullopt), never a wrapped value.
//
// ExtractFinalAnswer (math responses), first rule that matches:
//   1. "#### X"            GSM8K's marker: X is the rest of that line
//   2. "\boxed{X}"         the last one, braces balanced
//   3. "answer is X" / "answer: X"   (case-insensitive), the last one; X up to line end
//   4. the last number in the text ("1,000", "-3.5", "3/4" count as one number)
// NumericValue normalises an answer to an exact rational when it is a number: drops "$", "%",
// thousands commas, spaces, a trailing '.', \text{...} units after the number; accepts
// decimals, a/b and \frac{a}{b} / \dfrac{a}{b}. AnswersMatch compares numerically when both
// sides are numbers, else as case-folded text with whitespace removed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "envs/builtins/expression.h"

namespace tidal::envs::builtins {

std::optional<int64_t> FirstInteger(std::string_view text);
std::optional<std::string> ExtractFinalAnswer(std::string_view text);
std::optional<Rational> NumericValue(std::string_view answer);
bool AnswersMatch(std::string_view expected, std::string_view got);

}  // namespace tidal::envs::builtins
