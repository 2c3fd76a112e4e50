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
// think block in the generation prompt). Not covered: the `tools` argument (function
// definitions in the system prompt) and assistant `tool_calls`.
// Unlike Jinja, an unknown role is an error instead of being dropped silently.
//
// Pure function; thread-safe. The result is text: encode it with any Tokenizer (the byte
// tokenizer has <|im_start|> / <|im_end|> as specials, so tiny models use the same format).
#pragma once

#include <optional>
#include <span>
#include <string>

#include "core/status.h"

namespace tidal {

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" | "tool"
  std::string content;
  // Assistant only: the reasoning, when kept apart from `content` (else parsed from <think>).
  std::optional<std::string> reasoning_content;
};

struct ChatTemplateOptions {
  // Ends the prompt with "<|im_start|>assistant\n" so the model writes the next turn.
  bool add_generation_prompt = true;
  // nullopt or true: the template's default (the model may think). false: the generation prompt
  // gets an empty "<think>\n\n</think>\n\n", Qwen3's switch for answering without reasoning.
  std::optional<bool> enable_thinking;
};

absl::StatusOr<std::string> RenderQwenChat(std::span<const ChatMessage> messages,
                                           const ChatTemplateOptions& options = {});

}  // namespace tidal
