// Reader for HF tokenizer.json files. The file is mostly two huge sections (model.vocab: ~150k
// entries, model.merges: ~150k pairs); a generic JSON DOM spends seconds building maps for them.
// This reader streams those two sections straight into vectors and hands every other (small)
// section to nlohmann::json. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace tidal {

struct TokenizerJson {
  std::vector<std::pair<std::string, int64_t>> vocab;       // model.vocab, in file order
  std::vector<std::pair<std::string, std::string>> merges;  // model.merges, rank order
  bool has_vocab = false, has_merges = false;
  nlohmann::json model = nlohmann::json::object();  // model's other keys (type, dropout, ...)
  nlohmann::json root = nlohmann::json::object();   // every top-level key but model
};

// Merges may be ["a", "b"] pairs (tokenizers >= 0.20) or "a b" strings (older files). Errors
// name `source`, the byte offset, and the entry (e.g. "model.merges[12]").
absl::StatusOr<TokenizerJson> ParseTokenizerJson(std::string_view text, const std::string& source);

}  // namespace tidal
