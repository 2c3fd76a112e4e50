#include "core/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/bpe_tokenizer.h"
#include "core/byte_tokenizer.h"

namespace tidal {
namespace {

using Json = nlohmann::json;

const std::string kQwen3Dir = std::string(TIDAL_SOURCE_DIR) + "/tests/fixtures/qwen3-tokenizer";

// chat.jsonl: transformers' apply_chat_template with Qwen3's Jinja template
// (tools/parity/make_tokenizer_goldens.py), and HF tokenizers' encoding of the result.
TEST(ChatTemplate, MatchesTransformersAndItsEncoding) {
  auto tok = BpeTokenizer::Load(kQwen3Dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::ifstream in(kQwen3Dir + "/chat.jsonl");
  ASSERT_TRUE(in);
  int cases = 0;
  for (std::string line; std::getline(in, line); ++cases) {
    const Json row = Json::parse(line);
    std::vector<ChatMessage> messages;
    for (const Json& m : row["messages"])
      messages.push_back({m["role"], m["content"], std::nullopt});
    ChatTemplateOptions options;
    options.add_generation_prompt = row["add_generation_prompt"];
    if (!row["enable_thinking"].is_null())
      options.enable_thinking = row["enable_thinking"].get<bool>();
    auto text = RenderQwenChat(messages, options);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, row["text"].get<std::string>()) << "messages: " << row["messages"].dump();
    EXPECT_EQ((*tok)->Encode(*text), row["ids"].get<std::vector<TokenId>>());
  }
  EXPECT_GE(cases, 20);
}

TEST(ChatTemplate, ReasoningContentFieldIsUsedAfterTheLastQuery) {
  const std::vector<ChatMessage> messages = {
      {"user", "q", std::nullopt},
      {"assistant", "answer", std::string("\nthe reasoning\n")},
  };
  auto text =
      RenderQwenChat(messages, {.add_generation_prompt = false, .enable_thinking = std::nullopt});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nthe "
            "reasoning\n</think>\n\nanswer<|im_end|>\n");
}

TEST(ChatTemplate, RejectsUnknownRolesAndEmptyConversations) {
  EXPECT_EQ(RenderQwenChat({}).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<ChatMessage> bad = {{"user", "hi", std::nullopt},
                                        {"narrator", "x", std::nullopt}};
  auto text = RenderQwenChat(bad);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(text.status().message().find("message 1 has role 'narrator'"), std::string::npos);
}

TEST(ChatTemplate, ByteTokenizerEncodesTheSameFormatWithItsSpecials) {
  const std::vector<ChatMessage> messages = {{"user", "2+2?", std::nullopt}};
  auto text = RenderQwenChat(messages);
  ASSERT_TRUE(text.ok());
  ByteTokenizer tok;
  const std::vector<TokenId> ids = tok.Encode(*text);
  const std::vector<TokenId> want = {ByteTokenizer::kImStart,
                                     'u',
                                     's',
                                     'e',
                                     'r',
                                     '\n',
                                     '2',
                                     '+',
                                     '2',
                                     '?',
                                     ByteTokenizer::kImEnd,
                                     '\n',
                                     ByteTokenizer::kImStart,
                                     'a',
                                     's',
                                     's',
                                     'i',
                                     's',
                                     't',
                                     'a',
                                     'n',
                                     't',
                                     '\n'};
  EXPECT_EQ(ids, want);
  EXPECT_EQ(tok.Decode(ids), *text);
}

}  // namespace
}  // namespace tidal
