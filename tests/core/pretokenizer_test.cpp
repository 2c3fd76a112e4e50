#include "core/pretokenizer.h"

#include <gtest/gtest.h>

namespace tidal {
namespace {

constexpr char kQwenRegex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kLlama3Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::vector<std::string> Split(std::string_view text, const char* regex = kQwenRegex) {
  auto pattern = SplitPatternFromRegex(regex);
  EXPECT_TRUE(pattern.ok()) << pattern.status();
  std::vector<std::string_view> pieces;
  PreTokenize(text, *pattern, pieces);
  return {pieces.begin(), pieces.end()};
}

using V = std::vector<std::string>;

// Expected pieces are HF tokenizers' Split(Regex(...), "isolated") output (the scanner was
// fuzzed against it on 60k random strings during development; the BPE goldens cover it too).
TEST(PreTokenizer, FollowsTheRegexAlternatives) {
  EXPECT_EQ(Split("Hello, world!"), (V{"Hello", ",", " world", "!"}));
  EXPECT_EQ(Split("don't I'M"), (V{"don", "'t", " I", "'M"}));
  EXPECT_EQ(Split("'ſ"), (V{"'ſ"}));  // case-insensitive 's matches LONG S
  EXPECT_EQ(Split("x=12345"), (V{"x", "=", "1", "2", "3", "4", "5"}));
  EXPECT_EQ(Split("x=12345", kLlama3Regex), (V{"x", "=", "123", "45"}));
  EXPECT_EQ(Split("a  b"), (V{"a", " ", " b"}));              // \s+(?!\S) leaves one space for " b"
  EXPECT_EQ(Split("a   "), (V{"a", "   "}));                  // trailing run stays whole
  EXPECT_EQ(Split("a\n\n  b"), (V{"a", "\n\n", " ", " b"}));  // \s*[\r\n]+ ends at the last newline
  EXPECT_EQ(Split("x !?\n\ny"), (V{"x", " !?\n\n", "y"}));    // punctuation takes trailing newlines
  EXPECT_EQ(Split("\tabc"), (V{"\tabc"}));  // any non-letter/number prefix joins letters
  EXPECT_EQ(Split("中文 测试"), (V{"中文", " 测试"}));
  EXPECT_EQ(Split("\xC2\xA0non"), (V{"\xC2\xA0non"}));  // NBSP is \s but not \r\n: prefixes letters
  EXPECT_EQ(Split(""), V{});
}

TEST(PreTokenizer, InvalidUtf8DoesNotBreakTheScan) {
  const std::string text = "ab\xFF\xFE cd\xC3";
  std::string joined;
  for (const auto& p : Split(text)) joined += p;
  EXPECT_EQ(joined, text);
}

TEST(PreTokenizer, UnknownRegexIsUnimplemented) {
  EXPECT_EQ(SplitPatternFromRegex(R"(\w+|\s+)").status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace tidal
