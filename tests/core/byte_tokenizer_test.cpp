#include "core/byte_tokenizer.h"

#include <gtest/gtest.h>

#include <random>

namespace tidal {
namespace {

TEST(ByteTokenizer, BytesAreTheirOwnIds) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.Encode("Hi!"), (std::vector<TokenId>{72, 105, 33}));
  EXPECT_EQ(tok.Encode("é"), (std::vector<TokenId>{0xC3, 0xA9}));
  EXPECT_TRUE(tok.Encode("").empty());
  EXPECT_EQ(tok.VocabSize(), kByteVocabSize);
  EXPECT_EQ(kByteVocabSize, 260);
}

TEST(ByteTokenizer, SpecialTokensInTextAreRecognised) {
  ByteTokenizer tok;
  const std::vector<TokenId> ids =
      tok.Encode("<|im_start|>user\nhi<|im_end|><|endoftext|><|reserved|>");
  const std::vector<TokenId> want = {257, 'u', 's', 'e', 'r', '\n', 'h', 'i', 258, 256, 259};
  EXPECT_EQ(ids, want);
  // A '<' that starts no special, and a truncated special, stay bytes.
  EXPECT_EQ(tok.Encode("a<b<|im_end"),
            (std::vector<TokenId>{'a', '<', 'b', '<', '|', 'i', 'm', '_', 'e', 'n', 'd'}));
}

TEST(ByteTokenizer, SpecialIds) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.Specials().eos, 256);
  EXPECT_EQ(tok.Specials().pad, 256);
  EXPECT_FALSE(tok.Specials().bos.has_value());
  EXPECT_EQ(tok.Specials().stop, (std::vector<TokenId>{256, 258}));
  EXPECT_TRUE(tok.IsSpecial(257));
  EXPECT_FALSE(tok.IsSpecial(255));
  EXPECT_FALSE(tok.IsSpecial(260));
  EXPECT_EQ(tok.TokenToId("<|im_start|>"), 257);
  EXPECT_EQ(tok.IdToToken(258), "<|im_end|>");
  EXPECT_EQ(tok.IdToToken(65), "A");
  EXPECT_EQ(tok.TokenToId("A"), 65);
  EXPECT_FALSE(tok.IdToToken(260).has_value());
  EXPECT_FALSE(tok.IdToToken(-1).has_value());
  EXPECT_FALSE(tok.TokenToId("AB").has_value());
}

TEST(ByteTokenizer, DecodeRoundTripsAndSkipsSpecialsOnRequest) {
  ByteTokenizer tok;
  const std::string text = "<|im_start|>assistant\n强化学习 😀 ok<|im_end|>";
  const std::vector<TokenId> ids = tok.Encode(text);
  EXPECT_EQ(tok.Decode(ids), text);
  EXPECT_EQ(tok.Decode(ids, /*skip_special_tokens=*/true), "assistant\n强化学习 😀 ok");
}

TEST(ByteTokenizer, DecodeOfInvalidUtf8GivesReplacementCharacters) {
  ByteTokenizer tok;
  // Half of "é" (C3 A9), a stray continuation byte, then an id past the vocabulary.
  const std::vector<TokenId> ids = {'a', 0xC3, 'b', 0xA9, 300, -5, 'c'};
  EXPECT_EQ(tok.Decode(ids),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD"
            "c");
}

TEST(ByteTokenizer, RandomBytesNeverCrashAndGiveValidUtf8) {
  ByteTokenizer tok;
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<TokenId> ids(rng() % 64);
    for (TokenId& id : ids) id = static_cast<TokenId>(rng() % 270) - 5;
    const std::string text = tok.Decode(ids);
    // Valid UTF-8 re-encodes to the same bytes.
    std::vector<TokenId> again = tok.Encode(text);
    EXPECT_EQ(tok.Decode(again), text);
  }
}

}  // namespace
}  // namespace tidal
