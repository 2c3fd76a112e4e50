#include "core/unicode.h"

namespace tidal::unicode {

char32_t NextCodePoint(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  int need;                      // continuation bytes after the lead byte
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
  char32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // > U+10FFFF
  } else {
    ++pos;
    return kReplacementChar;
  }
  size_t i = pos + 1;
  for (int k = 0; k < need; ++k, ++i) {
    if (i >= text.size()) {
      pos = i;  // truncated: the valid prefix is one replacement
      return kReplacementChar;
    }
    const uint8_t b = byte(i);
    if (b < lo || b > hi) {
      pos = i;  // the offending byte starts the next attempt
      return kReplacementChar;
    }
    lo = 0x80;
    hi = 0xBF;
    cp = (cp << 6) | (b & 0x3F);
  }
  pos = i;
  return cp;
}

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsValidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t start = pos;
    // U+FFFD written literally is valid; only a substitution is an error.
    if (NextCodePoint(text, pos) == kReplacementChar &&
        text.substr(start, pos - start) != "\xEF\xBF\xBD") {
      return false;
    }
  }
  return true;
}

std::string ToValidUtf8(std::string_view text) {
  if (IsValidUtf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t cp = NextCodePoint(text, pos);
    if (cp == kReplacementChar) {
      AppendUtf8(cp, out);
    } else {
      out.append(text.substr(start, pos - start));
    }
  }
  return out;
}

}  // namespace tidal::unicode

#include <algorithm>
#include <vector>

#include "core/unicode_tables.h"

namespace tidal::unicode {
namespace {

using tables::Range;

bool InRanges(const Range* ranges, size_t n, char32_t cp) {
  // First range whose hi >= cp; cp is inside when its lo <= cp.
  const Range* end = ranges + n;
  const Range* it =
      std::lower_bound(ranges, end, cp, [](const Range& r, char32_t c) { return r.hi < c; });
  return it != end && it->lo <= cp;
}

// Hangul syllables compose and decompose algorithmically (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
              kSCount = kLCount * kNCount;

void DecomposeInto(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const int s = static_cast<int>(cp - kSBase);
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto* begin = tables::kDecompositions;
  const auto* end = begin + tables::kDecompositionsSize;
  const auto* it = std::lower_bound(
      begin, end, cp, [](const tables::Decomposition& d, char32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  DecomposeInto(it->first, out);
  if (it->second != 0) DecomposeInto(it->second, out);
}

// The primary composite of (a, b), or 0 when they do not compose.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto* begin = tables::kCompositions;
  const auto* end = begin + tables::kCompositionsSize;
  const auto* it = std::lower_bound(
      begin, end, std::pair{a, b},
      [](const tables::Composition& c, std::pair<char32_t, char32_t> key) {
        return c.first < key.first || (c.first == key.first && c.second < key.second);
      });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

}  // namespace

bool IsLetter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return InRanges(tables::kLetterRanges, tables::kLetterRangesSize, cp);
}

bool IsNumber(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return InRanges(tables::kNumberRanges, tables::kNumberRangesSize, cp);
}

bool IsWhitespace(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

uint8_t CombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* begin = tables::kCombiningClasses;
  const auto* end = begin + tables::kCombiningClassesSize;
  const auto* it = std::lower_bound(
      begin, end, cp, [](const tables::CombiningClassRange& r, char32_t c) { return r.hi < c; });
  return (it != end && it->lo <= cp) ? it->ccc : 0;
}

bool IsNfcQuick(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const char32_t cp = NextCodePoint(text, pos);
    if (InRanges(tables::kNfcMaybeChangesRanges, tables::kNfcMaybeChangesRangesSize, cp))
      return false;
  }
  return true;
}

std::string Nfc(std::string_view text) {
  if (IsNfcQuick(text)) return std::string(text);
  // Full decomposition.
  std::vector<char32_t> d;
  d.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) DecomposeInto(NextCodePoint(text, pos), d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  std::vector<uint8_t> ccc(d.size());
  for (size_t i = 0; i < d.size(); ++i) ccc[i] = CombiningClass(d[i]);
  for (size_t i = 1; i < d.size(); ++i) {
    for (size_t j = i; j > 0 && ccc[j] != 0 && ccc[j - 1] > ccc[j]; --j) {
      std::swap(d[j], d[j - 1]);
      std::swap(ccc[j], ccc[j - 1]);
    }
  }
  // Canonical composition (UAX #15 reference algorithm): a character composes with the last
  // starter unless a character in between has a class >= its own ("blocked").
  if (d.empty()) return std::string();
  std::vector<char32_t> out;
  out.reserve(d.size());
  out.push_back(d[0]);
  size_t starter = 0;
  // Class of the last character kept; 256 blocks composing onto a leading non-starter.
  int last_class = ccc[0] == 0 ? 0 : 256;
  for (size_t i = 1; i < d.size(); ++i) {
    const char32_t ch = d[i];
    const int ch_class = ccc[i];
    if (last_class < ch_class || last_class == 0) {
      if (const char32_t c = Compose(out[starter], ch); c != 0) {
        out[starter] = c;
        continue;
      }
    }
    if (ch_class == 0) starter = out.size();
    last_class = ch_class;
    out.push_back(ch);
  }
  std::string result;
  result.reserve(text.size());
  for (char32_t cp : out) AppendUtf8(cp, result);
  return result;
}

const char* TablesVersion() { return tables::kUnicodeVersion; }

}  // namespace tidal::unicode
