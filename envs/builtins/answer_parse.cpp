#include "envs/builtins/answer_parse.h"

#include <limits>

namespace tidal::envs::builtins {

std::optional<int64_t> FirstInteger(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && !(text[i] >= '0' && text[i] <= '9')) ++i;
  if (i == text.size()) return std::nullopt;
  const bool negative = i > 0 && text[i - 1] == '-';
  // Accumulate as a negative number so that INT64_MIN parses too.
  int64_t value = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    const int d = text[i] - '0';
    if (value < (std::numeric_limits<int64_t>::min() + d) / 10) return std::nullopt;
    value = value * 10 - d;
  }
  if (!negative) {
    if (value == std::numeric_limits<int64_t>::min()) return std::nullopt;
    return -value;
  }
  return value;
}

}  // namespace tidal::envs::builtins
