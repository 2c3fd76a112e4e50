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
  EXPECT_EQ(ToValidUtf8("a\xC3"), "a" + r);  // truncated at the end
  EXPECT_EQ(ToValidUtf8("\xE4\xB8"
                        "a"),
            r + "a");                                 // truncated 3-byte: one replacement
  EXPECT_EQ(ToValidUtf8("\xC0\xAF"), r + r);          // overlong lead bytes are invalid alone
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), r + r + r);  // surrogate
  EXPECT_EQ(ToValidUtf8("\xF4\x90\x80\x80"), r + r + r + r);  // > U+10FFFF
  EXPECT_EQ(ToValidUtf8("\xF0\x9F\x98"), r);                  // truncated emoji
  EXPECT_EQ(ToValidUtf8("\xFF"
                        "ok"),
            r + "ok");
  EXPECT_FALSE(IsValidUtf8("\xC3"));
}

}  // namespace
}  // namespace tidal::unicode

namespace tidal::unicode {
namespace {

TEST(Unicode, Categories) {
  EXPECT_TRUE(IsLetter(U'a'));
  EXPECT_TRUE(IsLetter(U'\u4E2D'));  // 中
  EXPECT_TRUE(IsLetter(U'\u02B0'));  // Lm
  EXPECT_FALSE(IsLetter(U'1'));
  EXPECT_FALSE(IsLetter(U'\u0301'));  // combining mark: Mn
  EXPECT_TRUE(IsNumber(U'\u0663'));   // Arabic-Indic three
  EXPECT_TRUE(IsNumber(U'\u00BD'));   // ½ (No)
  EXPECT_TRUE(IsNumber(U'\u216B'));   // Ⅻ (Nl)
  EXPECT_TRUE(IsWhitespace(U'\u3000'));
  EXPECT_TRUE(IsWhitespace(U'\u0085'));
  EXPECT_FALSE(IsWhitespace(U'\u200B'));  // zero width space is not White_Space
  EXPECT_EQ(CombiningClass(U'\u0301'), 230);
  EXPECT_EQ(CombiningClass(U'\u0327'), 202);
  EXPECT_EQ(CombiningClass(U'a'), 0);
}

// Expected values are Python's unicodedata.normalize("NFC", ...).
TEST(Unicode, Nfc) {
  EXPECT_EQ(Nfc("plain ascii"), "plain ascii");
  EXPECT_EQ(Nfc("cafe\u0301"), "caf\u00E9");
  EXPECT_EQ(Nfc("\u212B"), "\u00C5");               // ANGSTROM SIGN: singleton
  EXPECT_EQ(Nfc("a\u0327\u0301"), "\u00E1\u0327");  // reordered: cedilla (202) before acute (230)
  EXPECT_EQ(Nfc("a\u0301\u0327"), "\u00E1\u0327");
  EXPECT_EQ(Nfc("\u1100\u1161\u11A8"), "\uAC01");  // Hangul L V T -> syllable
  EXPECT_EQ(Nfc("\uAC00\u11A8"), "\uAC01");        // LV + T
  EXPECT_EQ(Nfc("\u0301a"), "\u0301a");            // leading mark stays
  EXPECT_EQ(Nfc("e\u0302\u0323"), "\u1EC7");       // ệ: dot below composes through
  EXPECT_TRUE(IsNfcQuick("caf\u00E9 中文"));
  EXPECT_FALSE(IsNfcQuick("cafe\u0301"));
}

}  // namespace
}  // namespace tidal::unicode
