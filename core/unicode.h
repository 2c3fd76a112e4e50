// Minimal Unicode support for tokenizers: UTF-8 decoding/encoding, the general-category classes
// the GPT-style pre-tokenizer regex uses (\p{L}, \p{N}, \s), and NFC normalization.
//
// Tables come from tools/codegen/gen_unicode_tables.py (Python's unicodedata) into
// core/unicode_tables.cpp. All functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tidal::unicode {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes the code point starting at text[pos] and advances pos past it. A byte that does not
// start a valid sequence (stray continuation, overlong, surrogate, > U+10FFFF, truncated) yields
// kReplacementChar and advances by the length of the maximal invalid prefix (at least 1), the
// same substitution rule as Rust's String::from_utf8_lossy and the WHATWG decoder.
char32_t NextCodePoint(std::string_view text, size_t& pos);

// Appends the UTF-8 encoding of cp (must be a scalar value).
void AppendUtf8(char32_t cp, std::string& out);

// `text` with every invalid byte sequence replaced by U+FFFD; valid input is returned unchanged.
std::string ToValidUtf8(std::string_view text);
bool IsValidUtf8(std::string_view text);

// General category L* (\p{L}) and N* (\p{N}).
bool IsLetter(char32_t cp);
bool IsNumber(char32_t cp);
// The White_Space property (\s in Unicode regex engines, Oniguruma included).
bool IsWhitespace(char32_t cp);

// Canonical combining class (0 for starters).
uint8_t CombiningClass(char32_t cp);

// Unicode Normalization Form C of valid UTF-8 text (invalid sequences are passed through as
// U+FFFD). Text that contains no character able to change under NFC (all ASCII, most CJK and
// already-composed Latin) is returned as is after one table scan.
std::string Nfc(std::string_view text);
// True when Nfc(text) == text is guaranteed by the quick check alone.
bool IsNfcQuick(std::string_view text);

// Version of the Unicode Character Database the tables were generated from.
const char* TablesVersion();

}  // namespace tidal::unicode
