#include "core/byte_tokenizer.h"

#include <array>

#include "core/unicode.h"

namespace tidal {
namespace {

// Texts of ids 256..259, in id order.
constexpr std::array<std::string_view, 4> kSpecialTexts = {"<|endoftext|>", "<|im_start|>",
                                                           "<|im_end|>", "<|reserved|>"};

}  // namespace

ByteTokenizer::ByteTokenizer() {
  specials_.eos = kEndOfText;
  specials_.pad = kEndOfText;
  specials_.stop = {kEndOfText, kImEnd};
}

std::vector<TokenId> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (text[pos] == '<') {  // every special starts with '<'; none is a prefix of another
      bool matched = false;
      for (size_t k = 0; k < kSpecialTexts.size(); ++k) {
        if (text.substr(pos, kSpecialTexts[k].size()) == kSpecialTexts[k]) {
          ids.push_back(static_cast<TokenId>(256 + k));
          pos += kSpecialTexts[k].size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    ids.push_back(static_cast<uint8_t>(text[pos]));
    ++pos;
  }
  return ids;
}

std::string ByteTokenizer::DecodeImpl(std::span<const TokenId> ids,
                                      bool skip_special_tokens) const {
  std::string bytes;
  bytes.reserve(ids.size());
  for (TokenId id : ids) {
    if (id >= 0 && id < 256) {
      bytes.push_back(static_cast<char>(id));
    } else if (IsSpecial(id) && !skip_special_tokens) {
      bytes.append(kSpecialTexts[id - 256]);
    }  // ids outside the vocabulary decode to nothing (see tokenizer.h)
  }
  return unicode::ToValidUtf8(bytes);
}

std::optional<std::string> ByteTokenizer::IdToToken(TokenId id) const {
  if (id >= 0 && id < 256) return std::string(1, static_cast<char>(id));
  if (IsSpecial(id)) return std::string(kSpecialTexts[id - 256]);
  return std::nullopt;
}

std::optional<TokenId> ByteTokenizer::TokenToId(std::string_view token) const {
  if (token.size() == 1) return static_cast<uint8_t>(token[0]);
  for (size_t k = 0; k < kSpecialTexts.size(); ++k) {
    if (token == kSpecialTexts[k]) return static_cast<TokenId>(256 + k);
  }
  return std::nullopt;
}

std::string ByteTokenizer::Describe() const {
  return absl::StrCat("byte (", kByteVocabSize,
                      " ids: 256 bytes + <|endoftext|> <|im_start|> <|im_end|> <|reserved|>)");
}

}  // namespace tidal
