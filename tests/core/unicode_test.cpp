#include "core/unicode.h"

#include <gtest/gtest.h>

namespace tidal::unicode {
namespace {

TEST(Unicode, DecodesValidSequences) {
  const std::string text = "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80";  // a é 中 😀
  size_t pos = 0;
  EXPECT_EQ(NextCodePoint(text, pos), U'a');
  EXPECT_EQ(NextCodePoint(text, pos), U'\u00E9');
  EXPECT_EQ(NextCodePoint(text, pos), U'\u4E2D');
  EXPECT_EQ(NextCodePoint(text, pos), U'\U0001F600');
  EXPECT_EQ(pos, text.size());
  std::string out;
  for (char32_t cp : {U'a', U'\u00E9', U'\u4E2D', U'\U0001F600'}) AppendUtf8(cp, out);
  EXPECT_EQ(out, text);
  EXPECT_TRUE(IsValidUtf8(text));
  EXPECT_TRUE(IsValidUtf8("\xEF\xBF\xBD"));  // a literal U+FFFD is valid
}

// Expected outputs follow Rust's String::from_utf8_lossy (maximal invalid prefix -> one U+FFFD).
TEST(Unicode, InvalidSequencesBecomeReplacementCharacters) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(ToValidUtf8("\x80"), r);
  EXPECT_EQ(ToValidUtf8("a\xC3"), "a" + r);                  // truncated at the end
  EXPECT_EQ(ToValidUtf8("\xE4\xB8" "a"), r + "a");          // truncated 3-byte: one replacement
  EXPECT_EQ(ToValidUtf8("\xC0\xAF"), r + r);                // overlong lead bytes are invalid alone
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), r + r + r);        // surrogate
  EXPECT_EQ(ToValidUtf8("\xF4\x90\x80\x80"), r + r + r + r);  // > U+10FFFF
  EXPECT_EQ(ToValidUtf8("\xF0\x9F\x98"), r);                // truncated emoji
  EXPECT_EQ(ToValidUtf8("\xFF" "ok"), r + "ok");
  EXPECT_FALSE(IsValidUtf8("\xC3"));
}

}  // namespace
}  // namespace tidal::unicode
