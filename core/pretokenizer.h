// Pre-tokenization of byte-level BPE tokenizers: splits text into the pieces BPE merges within,
// exactly as HF tokenizers' Split pre-tokenizer (behavior "Isolated") does with the GPT-4-style
// regex of Qwen2 / Qwen3 and Llama-3:
//
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+
//
// with K = 1 (Qwen) or 3 (Llama-3). std::regex has no Unicode classes, so this is a hand-written
// scanner over UTF-8 code points that follows the regex's alternation order and backtracking
// (see the comments in the .cpp). Pure functions; thread-safe.
#pragma once

#include <string_view>
#include <vector>

#include "core/status.h"

namespace tidal {

struct SplitPattern {
  int max_digits = 1;  // K above: the \p{N} alternative matches 1..K numeric characters
};

// Recognises the regex string of a tokenizer.json Split pre-tokenizer; anything else is
// Unimplemented (the scanner implements these patterns only).
absl::StatusOr<SplitPattern> SplitPatternFromRegex(std::string_view regex);

// Byte length of the piece that starts at byte offset `pos` (< text.size()) of `text`; always
// > 0. Encoders call this in a loop to avoid materialising the pieces.
size_t PieceLengthAt(std::string_view text, size_t pos, const SplitPattern& pattern);

// Appends the pieces of `text` (valid UTF-8) to `pieces`; their concatenation is `text`.
// Invalid UTF-8 is tolerated: each bad byte is treated as U+FFFD (punctuation class).
void PreTokenize(std::string_view text, const SplitPattern& pattern,
                 std::vector<std::string_view>& pieces);

}  // namespace tidal
