#include "core/pretokenizer.h"

#include <string>

#include "core/unicode.h"

namespace tidal {
namespace {

// Qwen2 / Qwen3 spell \p{N} alone; Llama-3 spells \p{N}{1,3}. Everything else is identical.
constexpr std::string_view kPatternPrefix =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})";
constexpr std::string_view kPatternSuffix =
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr char32_t kEnd = 0xFFFFFFFF;  // "no character": past the end of the text

// Code-point cursor over UTF-8 text.
class Cursor {
 public:
  explicit Cursor(std::string_view text) : text_(text) {}
  size_t size() const { return text_.size(); }
  // The code point at byte offset pos (kEnd at the end) and the offset after it.
  char32_t At(size_t pos, size_t* next) const {
    if (pos >= text_.size()) {
      *next = pos;
      return kEnd;
    }
    const auto b = static_cast<uint8_t>(text_[pos]);
    if (b < 0x80) {
      *next = pos + 1;
      return b;
    }
    size_t p = pos;
    const char32_t cp = unicode::NextCodePoint(text_, p);
    *next = p;
    return cp;
  }

 private:
  std::string_view text_;
};

bool IsCrLf(char32_t c) { return c == '\r' || c == '\n'; }
bool IsLetter(char32_t c) { return c != kEnd && unicode::IsLetter(c); }
bool IsNumber(char32_t c) { return c != kEnd && unicode::IsNumber(c); }
bool IsSpace(char32_t c) { return c != kEnd && unicode::IsWhitespace(c); }
// [^\s\p{L}\p{N}]
bool IsOther(char32_t c) { return c != kEnd && !IsSpace(c) && !IsLetter(c) && !IsNumber(c); }
// Case folding for the (?i:...) contractions: ASCII, plus U+017F LATIN SMALL LETTER LONG S,
// which Unicode folds to 's' (Oniguruma matches "'ſ" as "'s"). No other letter of the
// contractions has a non-ASCII fold.
char32_t Lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  return c == 0x17F ? 's' : c;
}

// Length in bytes of the piece starting at pos (> 0 while pos < size).
size_t MatchAt(const Cursor& cur, size_t pos, const SplitPattern& pattern) {
  size_t p1;
  const char32_t c0 = cur.At(pos, &p1);

  // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c0 == '\'') {
    size_t p2, p3;
    const char32_t c1 = Lower(cur.At(p1, &p2));
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return p2 - pos;
    const char32_t c2 = Lower(cur.At(p2, &p3));
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
      return p3 - pos;
  }

  // 2. [^\r\n\p{L}\p{N}]?\p{L}+  (the optional character is tried first, then without it)
  size_t letters_from = std::string::npos;
  if (!IsCrLf(c0) && !IsLetter(c0) && !IsNumber(c0)) {
    size_t p2;
    if (IsLetter(cur.At(p1, &p2))) letters_from = p1;
  } else if (IsLetter(c0)) {
    letters_from = pos;
  }
  if (letters_from != std::string::npos) {
    size_t p = letters_from, next;
    while (IsLetter(cur.At(p, &next))) p = next;
    return p - pos;
  }

  // 3. \p{N}{1,K}
  if (IsNumber(c0)) {
    size_t p = p1, next;
    for (int k = 1; k < pattern.max_digits && IsNumber(cur.At(p, &next)); ++k) p = next;
    return p - pos;
  }

  // 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'  (c0 is not a letter or number here)
  {
    size_t p = c0 == ' ' ? p1 : pos, next;
    if (IsOther(cur.At(p, &next))) {
      p = next;
      while (IsOther(cur.At(p, &next))) p = next;
      while (IsCrLf(cur.At(p, &next))) p = next;
      return p - pos;
    }
  }

  // Only whitespace is left: c0 starts a run of \s.
  size_t run_end = pos, last_start = pos, last_crlf_end = std::string::npos;
  for (;;) {
    size_t next;
    const char32_t c = cur.At(run_end, &next);
    if (!IsSpace(c)) break;
    last_start = run_end;
    if (IsCrLf(c)) last_crlf_end = next;
    run_end = next;
  }
  if (run_end == pos) return p1 - pos;  // unreachable: every class is covered above
  // 5. \s*[\r\n]+ : \s* backtracks to the last CR/LF of the run.
  if (last_crlf_end != std::string::npos) return last_crlf_end - pos;
  // 6. \s+(?!\S) : the whole run at the end of text, else the run minus its last character.
  if (run_end >= cur.size()) return run_end - pos;
  if (last_start > pos) return last_start - pos;
  // 7. \s+ : a single whitespace character before non-whitespace.
  return run_end - pos;
}

}  // namespace

absl::StatusOr<SplitPattern> SplitPatternFromRegex(std::string_view regex) {
  if (regex.size() == kPatternPrefix.size() + kPatternSuffix.size() &&
      regex.substr(0, kPatternPrefix.size()) == kPatternPrefix &&
      regex.substr(kPatternPrefix.size()) == kPatternSuffix) {
    return SplitPattern{.max_digits = 1};
  }
  const std::string llama3 = std::string(kPatternPrefix) + "{1,3}" + std::string(kPatternSuffix);
  if (regex == llama3) return SplitPattern{.max_digits = 3};
  return absl::UnimplementedError(
      absl::StrCat("pre-tokenizer Split regex is not one tidal implements (Qwen2/Qwen3, Llama-3): ",
                   std::string(regex)));
}

size_t PieceLengthAt(std::string_view text, size_t pos, const SplitPattern& pattern) {
  return MatchAt(Cursor(text), pos, pattern);
}

void PreTokenize(std::string_view text, const SplitPattern& pattern,
                 std::vector<std::string_view>& pieces) {
  const Cursor cur(text);
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t len = MatchAt(cur, pos, pattern);
    pieces.push_back(text.substr(pos, len));
    pos += len;
  }
}

}  // namespace tidal
