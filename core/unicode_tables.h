// Unicode data tables for core/unicode.cpp, generated into core/unicode_tables.cpp by
// tools/codegen/gen_unicode_tables.py. Every table is sorted by its first field.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tidal::unicode::tables {

struct Range {
  char32_t lo, hi;  // inclusive
};
struct CombiningClassRange {
  char32_t lo, hi;
  uint8_t ccc;
};
struct Decomposition {
  char32_t cp, first, second;  // second == 0: a singleton decomposition
};
struct Composition {
  char32_t first, second, composite;
};

extern const char kUnicodeVersion[];
extern const Range kLetterRanges[];
extern const size_t kLetterRangesSize;
extern const Range kNumberRanges[];
extern const size_t kNumberRangesSize;
extern const Range kNfcMaybeChangesRanges[];
extern const size_t kNfcMaybeChangesRangesSize;
extern const CombiningClassRange kCombiningClasses[];
extern const size_t kCombiningClassesSize;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionsSize;
extern const Composition kCompositions[];
extern const size_t kCompositionsSize;

}  // namespace tidal::unicode::tables
