#include "core/chat_template.h"

#include <gtest/gtest.h>

#include <cstdlib>
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

namespace tidal {
namespace {

// Tools and tool calls, rendered by transformers with Qwen3's template (the fixture's
// tokenizer_config.json) in the test itself: the tools block, tojson's spacing and key order,
// assistant tool calls with and without content, grouped tool responses.
TEST(ChatTemplate, ToolsAndToolCallsMatchTransformers) {
  const std::string python = TIDAL_PYTHON;
  if (std::system((python + " -c 'import transformers' 2>/dev/null").c_str()) != 0) {
    GTEST_SKIP() << "no python with transformers at " << python;
  }
  const std::string tools_text = R"([
    {"type": "function", "function": {"name": "calc", "description": "Évalue une expression",
      "parameters": {"type": "object", "properties": {"expr": {"type": "string"}, "digits": {"type": "integer", "default": 2}},
                     "required": ["expr"]}}},
    {"type": "function", "function": {"name": "now", "description": "time \"now\"\n", "parameters": {"type": "object", "properties": {}}}}])";
  const std::string messages_text = R"([
    {"role": "system", "content": "You are careful."},
    {"role": "user", "content": "what is 2+3, and the time?"},
    {"role": "assistant", "content": "", "tool_calls": [
      {"type": "function", "function": {"name": "calc", "arguments": "{\"expr\": \"2+3\"}"}}]},
    {"role": "tool", "content": "5"},
    {"role": "assistant", "content": "Let me check the time.", "tool_calls": [
      {"type": "function", "function": {"name": "now", "arguments": "{}"}},
      {"type": "function", "function": {"name": "calc", "arguments": "{\"expr\": \"1\"}"}}]},
    {"role": "tool", "content": "noon"},
    {"role": "tool", "content": "1"},
    {"role": "user", "content": "thanks"}])";
  const std::string dir = ::testing::TempDir();
  std::ofstream(dir + "/tools.json") << tools_text;
  std::ofstream(dir + "/messages.json") << messages_text;
  std::ofstream(dir + "/render.py") << R"PY(
import json, sys
from transformers import AutoTokenizer
d, fixture = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(fixture)
text = tok.apply_chat_template(json.load(open(d + "/messages.json")), tools=json.load(open(d + "/tools.json")),
                               tokenize=False, add_generation_prompt=True)
open(d + "/rendered.txt", "w").write(text)
)PY";
  ASSERT_EQ(std::system((python + " " + dir + "/render.py " + dir + " " + kQwen3Dir + " >/dev/null 2>&1").c_str()), 0);
  std::ifstream in(dir + "/rendered.txt");
  const std::string expected((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  ChatTemplateOptions options;
  for (const auto& tool : nlohmann::ordered_json::parse(tools_text)) options.tools.push_back(TemplateToJson(tool));
  std::vector<ChatMessage> messages;
  for (const auto& m : Json::parse(messages_text)) {
    ChatMessage cm{.role = m["role"], .content = m["content"]};
    for (const auto& c : m.value("tool_calls", Json::array())) {
      cm.tool_calls.push_back({c["function"]["name"], c["function"]["arguments"]});
    }
    messages.push_back(cm);
  }
  auto text = RenderQwenChat(messages, options);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, expected);
}

TEST(ChatTemplate, ParsesQwenToolCallsBack) {
  ParsedToolCalls p = ParseQwenToolCalls(
      "I will compute.\n<tool_call>\n{\"name\": \"calc\", \"arguments\": {\"expr\": \"2+3\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>");
  EXPECT_EQ(p.content, "I will compute.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "calc");
  EXPECT_EQ(Json::parse(p.calls[0].arguments), Json({{"expr", "2+3"}}));
  EXPECT_EQ(p.calls[1].name, "now");
  // Malformed or unterminated blocks leave the text alone.
  for (const char* bad : {"<tool_call>\n{\"name\": \"calc\"\n</tool_call>", "<tool_call>\n{\"name\": \"x\", \"arguments\": {}}",
                          "<tool_call>\nnot json\n</tool_call>"}) {
    p = ParseQwenToolCalls(bad);
    EXPECT_TRUE(p.calls.empty()) << bad;
    EXPECT_EQ(p.content, bad);
  }
  EXPECT_EQ(TemplateToJson(nlohmann::ordered_json::parse(R"({"b": [1, 2.5, "é\n"], "a": {}, "c": null})")),
            "{\"b\": [1, 2.5, \"é\\n\"], \"a\": {}, \"c\": null}");
}

}  // namespace
}  // namespace tidal
