// Text <-> token ids, behind one small interface with two implementations: ByteTokenizer (tiny
// built-in models) and BpeTokenizer (HF tokenizer.json byte-level BPE: Qwen2 / Qwen3).
//
// Contract:
// - A Tokenizer is immutable after LoadTokenizer returns; every method is const and safe to call
//   from any number of threads at once (implementations guard their internal caches).
// - Encode never adds special tokens (no BOS/EOS); special tokens written in the text, such as
//   "<|im_start|>", are recognised and become their single id, as HF tokenizers does with
//   split_special_tokens=false. Prompts are built as text (core/chat_template.h) and encoded.
// - Decode maps every id back to its bytes (special tokens as their text, unless skipped) and
//   always returns valid UTF-8: byte sequences that are not UTF-8 (a token boundary in the middle
//   of a character) become U+FFFD, as HF's `from_utf8_lossy` does. Ids outside the vocabulary
//   (a model's padded embedding rows) decode to nothing instead of failing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tidal {

using TokenId = int32_t;

// Ids of the special tokens a model's generation loop needs; absent where the tokenizer has none.
struct SpecialTokenIds {
  std::optional<TokenId> bos;
  std::optional<TokenId> eos;  // ends an assistant turn (Qwen: <|im_end|>)
  std::optional<TokenId> pad;
  // Every id that should stop generation: eos plus end-of-text style tokens (Qwen: <|im_end|>,
  // <|endoftext|>), deduplicated, ascending.
  std::vector<TokenId> stop;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual std::vector<TokenId> Encode(std::string_view text) const = 0;

  // Valid UTF-8 text of `ids` (see the contract above). With skip_special_tokens, special tokens
  // (those marked special, e.g. <|im_end|>) are left out.
  std::string Decode(std::span<const TokenId> ids, bool skip_special_tokens = false) const {
    return DecodeImpl(ids, skip_special_tokens);
  }

  // Number of ids, specials included: every valid id is in [0, VocabSize()).
  virtual int64_t VocabSize() const = 0;

  // The token's string as the tokenizer's vocabulary spells it (for BPE the byte-level form,
  // e.g. "Ġhello"; for specials their text), or nullopt for an id outside the vocabulary.
  virtual std::optional<std::string> IdToToken(TokenId id) const = 0;
  // Inverse of IdToToken.
  virtual std::optional<TokenId> TokenToId(std::string_view token) const = 0;

  virtual bool IsSpecial(TokenId id) const = 0;
  virtual const SpecialTokenIds& Specials() const = 0;

  // One line saying what was loaded, for logs and `tidal model inspect`.
  virtual std::string Describe() const = 0;

 protected:
  virtual std::string DecodeImpl(std::span<const TokenId> ids, bool skip_special_tokens) const = 0;
};

// `spec` is "byte" (ByteTokenizer) or a directory holding tokenizer.json (and optionally
// tokenizer_config.json, which names eos/pad/bos). Errors name the file and key at fault.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& spec);

}  // namespace tidal
