// The Qwen chat format (ChatML with Qwen3's reasoning rules), rendered natively instead of by a
// Jinja engine. Output equals what HF transformers renders with Qwen3's tokenizer_config.json
// chat_template for the features below (tests/core/chat_template_test.cpp checks against
// goldens from tools/parity/make_tokenizer_goldens.py):
//
//   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n
//   <|im_start|>assistant\n{answer}<|im_end|>\n ... [<|im_start|>assistant\n]
//
// Covered: system (first or later), user, assistant and tool turns; assistant reasoning (either
// `reasoning_content` or "<think>...</think>" inside the content), which Qwen3 keeps only for
// turns after the last real user query; add_generation_prompt; enable_thinking=false (empty
// think block in the generation prompt); the `tools` argument (function definitions in the
// system prompt, each printed as Jinja's tojson prints it: TemplateToJson) and assistant
// `tool_calls` (<tool_call> blocks). ParseQwenToolCalls reads such blocks back from model output.
// Unlike Jinja, an unknown role is an error instead of being dropped silently.
//
// Pure function; thread-safe. The result is text: encode it with any Tokenizer (the byte
// tokenizer has <|im_start|> / <|im_end|> as specials, so tiny models use the same format).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace tidal {

struct ChatToolCall {
  std::string name;
  std::string arguments;  // JSON text, printed verbatim (OpenAI sends arguments as a string)
};

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" | "tool"
  std::string content;
  // Assistant only: the reasoning, when kept apart from `content` (else parsed from <think>).
  std::optional<std::string> reasoning_content;
  std::vector<ChatToolCall> tool_calls;  // assistant only
};

struct ChatTemplateOptions {
  // Ends the prompt with "<|im_start|>assistant\n" so the model writes the next turn.
  bool add_generation_prompt = true;
  // nullopt or true: the template's default (the model may think). false: the generation prompt
  // gets an empty "<think>\n\n</think>\n\n", Qwen3's switch for answering without reasoning.
  std::optional<bool> enable_thinking;
  // Function definitions offered to the model, each already JSON text (TemplateToJson of the
  // OpenAI-style {"type": "function", "function": {...}} object); empty = no tools block.
  std::vector<std::string> tools;
};

absl::StatusOr<std::string> RenderQwenChat(std::span<const ChatMessage> messages,
                                           const ChatTemplateOptions& options = {});

// JSON text as transformers' Jinja `tojson` filter prints it (Python json.dumps: ", " and ": "
// separators, keys in the given order, non-ASCII kept), so rendered prompts match HF byte for byte.
std::string TemplateToJson(const nlohmann::ordered_json& value);

// Tool calls the model wrote in Qwen's format: each
//   <tool_call>\n{"name": "...", "arguments": {...}}\n</tool_call>
// block whose body parses as such an object becomes a call (arguments re-serialised as compact
// JSON text); `content` is the text before the first block, whitespace-trimmed at its end.
// A block that does not parse leaves everything as content (no calls).
struct ParsedToolCalls {
  std::string content;
  std::vector<ChatToolCall> calls;
};
ParsedToolCalls ParseQwenToolCalls(std::string_view text);

// The Jinja source of the template RenderQwenChat reproduces (Qwen3's chat_template), written
// into exported tokenizer_config.json files so that transformers renders the same prompts.
std::string_view QwenChatTemplateJinja();

}  // namespace tidal
