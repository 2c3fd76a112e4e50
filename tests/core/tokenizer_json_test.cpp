#include "core/tokenizer_json.h"

#include <gtest/gtest.h>

namespace tidal {
namespace {

TEST(TokenizerJson, StreamsVocabAndMergesAndKeepsTheRest) {
  const std::string text = R"({
    "version": "1.0", "added_tokens": [{"id": 5, "content": "<s>"}],
    "model": {"type": "BPE", "dropout": null,
              "vocab": {"a": 0, "b": 1, "\u0120x\"\\\/\n": 2, "\ud83d\ude00": 3},
              "merges": [["a", "b"], "b a"], "ignore_merges": false},
    "normalizer": {"type": "NFC"}})";
  auto parsed = ParseTokenizerJson(text, "t.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->vocab.size(), 4u);
  EXPECT_EQ(parsed->vocab[2].first, "\xC4\xA0x\"\\/\n");
  EXPECT_EQ(parsed->vocab[2].second, 2);
  EXPECT_EQ(parsed->vocab[3].first, "\xF0\x9F\x98\x80");  // surrogate pair -> one code point
  EXPECT_EQ(parsed->merges,
            (std::vector<std::pair<std::string, std::string>>{{"a", "b"}, {"b", "a"}}));
  EXPECT_EQ(parsed->model["type"], "BPE");
  EXPECT_TRUE(parsed->model["dropout"].is_null());
  EXPECT_FALSE(parsed->model.contains("vocab"));
  EXPECT_EQ(parsed->root["normalizer"]["type"], "NFC");
  EXPECT_EQ(parsed->root["added_tokens"][0]["content"], "<s>");
}

TEST(TokenizerJson, MalformedInputIsAnErrorWithTheOffset) {
  for (const char* bad :
       {"", "{", R"({"model": {"vocab": {"a": 1.5}}})", R"({"model": {"vocab": {"a" 1}}})",
        R"({"model": {"merges": [["a"]]}})", R"({"model": {"merges": ["ab"]}})",
        R"({"x": "\ud800"})", R"({"x": "unterminated)", R"({"x": [1, 2})", "{} trailing"}) {
    auto parsed = ParseTokenizerJson(bad, "t.json");
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find("t.json"), std::string::npos) << parsed.status();
  }
}

}  // namespace
}  // namespace tidal
