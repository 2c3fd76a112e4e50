#include "core/chat_template.h"

#include <string_view>

namespace tidal {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";

// Python's str.lstrip('\n') / rstrip('\n') / strip('\n'), which the template uses.
std::string_view LStripNewlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  return s;
}
std::string_view RStripNewlines(std::string_view s) {
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

bool IsToolResponse(std::string_view content) {
  return content.starts_with("<tool_response>") && content.ends_with("</tool_response>");
}

template <typename... Parts>
void Append(std::string& out, const Parts&... parts) {
  (out.append(std::string_view(parts)), ...);
}

void Turn(std::string& out, std::string_view role, std::string_view content) {
  Append(out, "<|im_start|>", role, "\n", content, "<|im_end|>\n");
}

}  // namespace

absl::StatusOr<std::string> RenderQwenChat(std::span<const ChatMessage> messages,
                                           const ChatTemplateOptions& options) {
  if (messages.empty()) return absl::InvalidArgumentError("chat template: no messages");
  const int n = static_cast<int>(messages.size());
  for (int i = 0; i < n; ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      return absl::InvalidArgumentError(
          absl::StrCat("chat template: message ", i, " has role '", role,
                       "'; expected system, user, assistant or tool"));
    }
  }

  std::string out;
  if (messages[0].role == "system") Turn(out, "system", messages[0].content);

  // The last user turn that is a real query (not a tool response wrapped as user text):
  // reasoning of assistant turns after it is kept, before it dropped.
  int last_query = n - 1;
  for (int i = n - 1; i >= 0; --i) {
    if (messages[i].role == "user" && !IsToolResponse(messages[i].content)) {
      last_query = i;
      break;
    }
  }

  for (int i = 0; i < n; ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      Turn(out, m.role, m.content);
    } else if (m.role == "assistant") {
      std::string_view content = m.content;
      std::string_view reasoning;
      if (m.reasoning_content) {
        reasoning = *m.reasoning_content;
      } else if (const size_t close = content.find(kThinkClose); close != std::string_view::npos) {
        // content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
        std::string_view before = RStripNewlines(content.substr(0, close));
        if (const size_t open = before.rfind(kThinkOpen); open != std::string_view::npos) {
          before = before.substr(open + kThinkOpen.size());
        }
        reasoning = LStripNewlines(before);
        // content.split('</think>')[-1].lstrip('\n')
        content = LStripNewlines(content.substr(content.rfind(kThinkClose) + kThinkClose.size()));
      }
      out += "<|im_start|>assistant\n";
      if (i > last_query && (i == n - 1 || !reasoning.empty())) {
        Append(out, "<think>\n", RStripNewlines(LStripNewlines(reasoning)), "\n</think>\n\n",
               LStripNewlines(content));
      } else {
        out += content;
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      Append(out, "\n<tool_response>\n", m.content, "\n</tool_response>");
      if (i == n - 1 || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  if (options.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (options.enable_thinking == false) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

}  // namespace tidal
