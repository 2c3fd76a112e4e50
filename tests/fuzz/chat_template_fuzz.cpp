// libFuzzer target: the Qwen chat template (roles, <think> parsing, reasoning placement,
// generation prompt). The input is a conversation: messages separated by '\x1e'; each message's
// first byte picks its role (and, with bit 3, a separate reasoning_content after '\x1f'); byte 0
// of the input sets the options. Any status is fine; a crash or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  tidal::ChatTemplateOptions options;
  options.add_generation_prompt = data[0] & 1;
  if (data[0] & 2) options.enable_thinking = (data[0] & 4) != 0;
  static const char* kRoles[] = {"system", "user", "assistant", "tool", "developer", "", "user", "assistant"};
  std::vector<tidal::ChatMessage> messages;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t start = 0;
  while (start < text.size() && messages.size() < 32) {
    size_t end = text.find('\x1e', start);
    if (end == std::string::npos) end = text.size();
    std::string part = text.substr(start, end - start);
    start = end + 1;
    if (part.empty()) continue;
    const uint8_t sel = static_cast<uint8_t>(part[0]);
    tidal::ChatMessage m;
    m.role = kRoles[sel & 7];
    m.content = part.substr(1);
    if (sel & 8) {
      const size_t sep = m.content.find('\x1f');
      if (sep != std::string::npos) {
        m.reasoning_content = m.content.substr(sep + 1);
        m.content.resize(sep);
      }
    }
    messages.push_back(std::move(m));
  }
  (void)tidal::RenderQwenChat(messages, options);
  return 0;
}
