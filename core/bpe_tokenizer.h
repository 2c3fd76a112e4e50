// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (Qwen2 / Qwen3 layout; the
// Llama-3 split regex is recognised too). Encoding reproduces HF `tokenizers` id for id:
//
//   text -> split out added tokens (leftmost-longest; non-normalized ones on the raw text)
//        -> NFC (if the json's normalizer says so) -> split out normalized added tokens
//        -> pre-tokenize (core/pretokenizer.h) -> BPE merges by rank within each piece.
//
// BPE works on raw bytes: the vocabulary's byte-level strings ("Ġhello") are mapped back to
// bytes when loading, so encoding never builds byte-level strings.
//
// Supported tokenizer.json subset (anything else is an Unimplemented error naming the key):
// model.type "BPE" without dropout / continuing_subword_prefix / end_of_word_suffix;
// normalizer null or NFC; pre_tokenizer Sequence[Split(regex, Isolated), ByteLevel(use_regex
// false, add_prefix_space false)]; added tokens without lstrip / rstrip / single_word.
//
// Known differences from HF, none of which the goldens hit: (1) the category and NFC tables are
// Unicode 16.0 (matching Oniguruma, HF's regex engine), while HF's NFC crate is an older Unicode
// version, so characters whose decompositions were added since may normalize differently;
// (2) Decode writes added tokens' content verbatim, where HF runs it through the ByteLevel
// decoder: different only for added tokens spelled in byte-level characters (none in Qwen's).
//
// Thread-safety: immutable after Load, except a bounded per-piece cache of merge results that
// is guarded by a mutex; Encode/Decode may run on any number of threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/tokenizer.h"

namespace tidal {

// GPT-2's byte-level spelling of raw bytes (" hello" -> "Ġhello"), as tokenizer.json vocabularies
// write tokens.
std::string BytesToByteLevel(std::string_view bytes);

class BpeTokenizer final : public Tokenizer {
 public:
  // Reads dir/tokenizer.json, and dir/tokenizer_config.json and dir/generation_config.json when
  // present (eos / pad / bos tokens and stop ids).
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Load(const std::string& dir);
  // From tokenizer.json text; `config_json` is tokenizer_config.json text or empty. `source`
  // names the origin in error messages.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(const std::string& tokenizer_json,
                                                                const std::string& config_json,
                                                                const std::string& source);
  ~BpeTokenizer() override;

  std::vector<TokenId> Encode(std::string_view text) const override;
  int64_t VocabSize() const override;
  std::optional<std::string> IdToToken(TokenId id) const override;
  std::optional<TokenId> TokenToId(std::string_view token) const override;
  bool IsSpecial(TokenId id) const override;
  const SpecialTokenIds& Specials() const override;
  std::string Describe() const override;

 private:
  struct Impl;
  explicit BpeTokenizer(std::unique_ptr<Impl> impl);
  std::string DecodeImpl(std::span<const TokenId> ids, bool skip_special_tokens) const override;

  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal
