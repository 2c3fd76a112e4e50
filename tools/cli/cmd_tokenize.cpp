// `tidal tokenize [--tokenizer DIR|byte] TEXT` prints the ids of TEXT (comma-separated);
// `--decode 1,2,3` prints the text of ids instead; `--chat` wraps TEXT as one user turn of the
// Qwen chat format (with the generation prompt) before encoding; `--tokens` prints each id with
// its token string.
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/chat_template.h"
#include "core/tokenizer.h"
#include "tools/cli/command.h"

namespace {

struct Args {
  std::string tokenizer = "byte";
  std::string text;
  std::string decode;
  bool chat = false;
  bool tokens = false;
  bool skip_special = false;
};

absl::StatusOr<std::vector<tidal::TokenId>> ParseIds(const std::string& list) {
  std::vector<tidal::TokenId> ids;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--decode: '", part, "' is not an integer id"));
    }
    ids.push_back(id);
  }
  return ids;
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto args = std::make_shared<Args>();
  sub.add_option("--tokenizer", args->tokenizer,
                 "\"byte\" or a directory holding tokenizer.json (+ tokenizer_config.json)")
      ->capture_default_str();
  sub.add_option("text", args->text, "Text to encode");
  sub.add_option("--decode", args->decode,
                 "Comma-separated ids to decode instead of encoding text");
  sub.add_flag("--chat", args->chat, "Encode TEXT as a user turn of the Qwen chat format");
  sub.add_flag("--tokens", args->tokens,
               "Print one 'id<TAB>token' line per id (token as JSON string)");
  sub.add_flag("--skip-special", args->skip_special, "With --decode: leave special tokens out");
  return [args]() -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<tidal::Tokenizer> tok,
                           tidal::LoadTokenizer(args->tokenizer));
    std::vector<tidal::TokenId> ids;
    if (!args->decode.empty()) {
      if (!args->text.empty())
        return absl::InvalidArgumentError("give either TEXT or --decode, not both");
      TIDAL_ASSIGN_OR_RETURN(ids, ParseIds(args->decode));
      if (!args->tokens) {
        std::cout << tok->Decode(ids, args->skip_special) << "\n";
        return absl::OkStatus();
      }
    } else {
      std::string text = args->text;
      if (args->chat) {
        const std::vector<tidal::ChatMessage> messages = {{"user", text, std::nullopt}};
        TIDAL_ASSIGN_OR_RETURN(text, tidal::RenderQwenChat(messages));
      }
      ids = tok->Encode(text);
    }
    if (args->tokens) {
      for (tidal::TokenId id : ids) {
        const std::optional<std::string> token = tok->IdToToken(id);
        // Byte tokens need not be valid UTF-8 alone; JSON-escape them safely.
        const std::string shown =
            token ? nlohmann::json(*token).dump(-1, ' ', false,
                                                nlohmann::json::error_handler_t::replace)
                  : "(not in vocabulary)";
        std::cout << id << "\t" << shown << "\n";
      }
    } else {
      std::cout << absl::StrJoin(ids, ",") << "\n";
    }
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("tokenize", "Encode text to token ids, or decode ids to text", Setup);

}  // namespace
