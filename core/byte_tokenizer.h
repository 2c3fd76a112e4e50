// Byte-level tokenizer for tiny built-in models: one id per UTF-8 byte plus four specials.
//
// Ids 0..255 are the bytes; 256 <|endoftext|> (eos and pad), 257 <|im_start|>, 258 <|im_end|>,
// 259 <|reserved|>. The ChatML specials let tiny models use the same chat format as Qwen
// (core/chat_template.h). Stateless, so trivially thread-safe.
#pragma once

#include "core/tokenizer.h"

namespace tidal {

inline constexpr int64_t kByteVocabSize = 260;  // ModelConfig::vocab_size of byte-level models

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr TokenId kEndOfText = 256;
  static constexpr TokenId kImStart = 257;
  static constexpr TokenId kImEnd = 258;
  static constexpr TokenId kReserved = 259;

  ByteTokenizer();

  std::vector<TokenId> Encode(std::string_view text) const override;
  int64_t VocabSize() const override { return kByteVocabSize; }
  // Bytes are one-byte strings (not necessarily valid UTF-8 alone); specials their text.
  std::optional<std::string> IdToToken(TokenId id) const override;
  std::optional<TokenId> TokenToId(std::string_view token) const override;
  bool IsSpecial(TokenId id) const override { return id >= 256 && id < kByteVocabSize; }
  const SpecialTokenIds& Specials() const override { return specials_; }
  std::string Describe() const override;

 private:
  std::string DecodeImpl(std::span<const TokenId> ids, bool skip_special_tokens) const override;

  SpecialTokenIds specials_;
};

}  // namespace tidal
