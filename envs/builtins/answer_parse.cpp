#include "envs/builtins/answer_parse.h"

#include <cctype>
#include <limits>

namespace tidal::envs::builtins {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Content of the last \boxed{...} with balanced braces.
std::optional<std::string> LastBoxed(std::string_view text) {
  const size_t at = text.rfind("\\boxed{");
  if (at == std::string_view::npos) return std::nullopt;
  size_t i = at + 7;
  int depth = 1;
  const size_t start = i;
  for (; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) return std::string(text.substr(start, i - start));
  }
  return std::nullopt;
}

// Span [begin, end) of the last number: digits with thousands commas, an optional fraction
// part, an optional "/digits", and a '-' directly before it.
std::optional<std::string> LastNumber(std::string_view text) {
  size_t end = text.size();
  while (end > 0 && !IsDigit(text[end - 1])) --end;
  if (end == 0) return std::nullopt;
  size_t begin = end;
  while (begin > 0) {
    const char c = text[begin - 1];
    if (IsDigit(c)) {
      --begin;
    } else if ((c == ',' || c == '.' || c == '/') && begin >= 2 && IsDigit(text[begin - 2])) {
      --begin;
    } else {
      break;
    }
  }
  if (begin > 0 && text[begin - 1] == '-') --begin;
  return std::string(text.substr(begin, end - begin));
}

// The first number in the text, same shape as LastNumber.
std::optional<std::string> FirstNumber(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size() && !IsDigit(text[begin])) ++begin;
  if (begin == text.size()) return std::nullopt;
  size_t end = begin;
  while (end < text.size()) {
    const char c = text[end];
    if (IsDigit(c)) {
      ++end;
    } else if ((c == ',' || c == '.' || c == '/') && end + 1 < text.size() &&
               IsDigit(text[end + 1])) {
      ++end;
    } else {
      break;
    }
  }
  if (begin > 0 && text[begin - 1] == '-') --begin;
  return std::string(text.substr(begin, end - begin));
}

}  // namespace

std::optional<int64_t> FirstInteger(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && !IsDigit(text[i])) ++i;
  if (i == text.size()) return std::nullopt;
  const bool negative = i > 0 && text[i - 1] == '-';
  // Accumulate as a negative number so that INT64_MIN parses too.
  int64_t value = 0;
  for (; i < text.size() && IsDigit(text[i]); ++i) {
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

std::optional<std::string> ExtractFinalAnswer(std::string_view text) {
  if (size_t at = text.rfind("####"); at != std::string_view::npos) {
    std::string_view rest = text.substr(at + 4);
    rest = rest.substr(0, rest.find('\n'));
    if (!Trim(rest).empty()) return std::string(Trim(rest));
  }
  if (auto boxed = LastBoxed(text)) return std::string(Trim(*boxed));
  const std::string lower = Lower(text);
  for (const char* marker : {"answer is", "answer:"}) {
    if (size_t at = lower.rfind(marker); at != std::string::npos) {
      std::string_view rest = text.substr(at + std::string_view(marker).size());
      rest = rest.substr(0, rest.find('\n'));
      rest = Trim(rest);
      if (!rest.empty() && rest.front() == ':') rest = Trim(rest.substr(1));
      if (!rest.empty()) {
        // "The answer is 42 apples." -> the first number of that phrase, else the phrase.
        if (auto n = FirstNumber(rest)) return *n;
        return std::string(rest);
      }
    }
  }
  return LastNumber(text);
}

std::optional<Rational> NumericValue(std::string_view answer) {
  std::string s(Trim(answer));
  // \text{...} units after the number, and LaTeX spacing.
  if (size_t t = s.find("\\text{"); t != std::string::npos) s = s.substr(0, t);
  for (const char* junk : {"\\!", "\\,", "\\$", "\\%", "$", "%"}) {
    for (size_t p; (p = s.find(junk)) != std::string::npos;) s.erase(p, std::string(junk).size());
  }
  // \frac{a}{b}, \dfrac{a}{b} (optionally signed)
  for (const char* frac : {"\\dfrac{", "\\frac{"}) {
    if (size_t p = s.find(frac); p != std::string::npos) {
      const size_t a0 = p + std::string(frac).size();
      const size_t a1 = s.find('}', a0);
      if (a1 == std::string::npos || a1 + 1 >= s.size() || s[a1 + 1] != '{') return std::nullopt;
      const size_t b1 = s.find('}', a1 + 2);
      if (b1 == std::string::npos) return std::nullopt;
      s = s.substr(0, p) + "(" + s.substr(a0, a1 - a0) + ")/(" + s.substr(a1 + 2, b1 - a1 - 2) +
          ")" + s.substr(b1 + 1);
      auto e = EvaluateExpression(s);
      if (!e.ok()) return std::nullopt;
      return e->value;
    }
  }
  std::string t(Trim(s));
  while (!t.empty() && t.back() == '.') t.pop_back();
  auto v = ParseNumber(t);
  if (!v.ok()) return std::nullopt;
  return *v;
}

bool AnswersMatch(std::string_view expected, std::string_view got) {
  auto a = NumericValue(expected), b = NumericValue(got);
  if (a && b) return *a == *b;
  if (a || b) return false;
  auto squash = [](std::string_view s) {
    std::string out;
    for (char c : s) {
      if (!std::isspace(static_cast<unsigned char>(c))) {
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
    }
    while (!out.empty() && out.back() == '.') out.pop_back();
    return out;
  };
  return squash(expected) == squash(got);
}

}  // namespace tidal::envs::builtins
