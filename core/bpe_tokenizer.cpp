#include "core/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "core/pretokenizer.h"
#include "core/tokenizer_json.h"
#include "core/unicode.h"

namespace tidal {
namespace {

using Json = nlohmann::json;

// GPT-2's reversible byte <-> printable-character mapping used by ByteLevel pre-tokenizers:
// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
struct ByteLevelMap {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 512> to_byte{};  // -1: not a byte-level character

  ByteLevelMap() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      to_byte[to_char[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteLevelMap& ByteLevel() {
  static const ByteLevelMap map;
  return map;
}

// "Ġhello" -> " hello"; nullopt if a character is not byte-level.
std::optional<std::string> ByteLevelToBytes(std::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t pos = 0; pos < token.size();) {
    const char32_t cp = unicode::NextCodePoint(token, pos);
    if (cp >= 512 || ByteLevel().to_byte[cp] < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(ByteLevel().to_byte[cp]));
  }
  return bytes;
}

}  // namespace

std::string BytesToByteLevel(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) unicode::AppendUtf8(ByteLevel().to_char[static_cast<uint8_t>(b)], out);
  return out;
}

namespace {

struct AddedToken {
  std::string content;
  TokenId id;
  bool special;
};

// Leftmost-longest search for a set of literal tokens (HF uses Aho-Corasick with the same
// semantics; tokenizers have tens of added tokens, so a first-byte filter is enough).
class AddedTokenMatcher {
 public:
  void Add(const AddedToken* token) {
    auto& bucket = by_first_byte_[static_cast<uint8_t>(token->content[0])];
    bucket.push_back(token);
    std::stable_sort(bucket.begin(), bucket.end(), [](const AddedToken* a, const AddedToken* b) {
      return a->content.size() > b->content.size();
    });
    empty_ = false;
  }
  bool empty() const { return empty_; }

  // The leftmost match at or after `from`: its offset and token, or {npos, nullptr}.
  std::pair<size_t, const AddedToken*> Find(std::string_view text, size_t from) const {
    for (size_t pos = from; pos < text.size(); ++pos) {
      const auto& bucket = by_first_byte_[static_cast<uint8_t>(text[pos])];
      for (const AddedToken* token : bucket) {  // longest first
        if (text.compare(pos, token->content.size(), token->content) == 0) return {pos, token};
      }
    }
    return {std::string_view::npos, nullptr};
  }

 private:
  std::array<std::vector<const AddedToken*>, 256> by_first_byte_;
  bool empty_ = true;
};

// Calls on_text(segment) for the text between matches and on_token(id) for each match.
template <typename OnText, typename OnToken>
void SplitOnAddedTokens(const AddedTokenMatcher& matcher, std::string_view text, OnText on_text,
                        OnToken on_token) {
  size_t pos = 0;
  while (pos < text.size()) {
    const auto [at, token] = matcher.Find(text, pos);
    if (token == nullptr) {
      on_text(text.substr(pos));
      return;
    }
    if (at > pos) on_text(text.substr(pos, at - pos));
    on_token(token->id);
    pos = at + token->content.size();
  }
}

struct Merge {
  int32_t rank;
  TokenId merged;
};
uint64_t PairKey(TokenId left, TokenId right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// tokenizer_config.json spells a token as "text", {"content": "text", ...} or null.
std::optional<std::string> TokenText(const Json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

// Pieces longer than this skip the cache: they are rare and would crowd it.
constexpr size_t kMaxCachedPieceBytes = 64;
constexpr size_t kMaxCacheEntries = 1 << 18;
// Below this many symbols the O(n^2) scan over a rank array beats a heap.
constexpr size_t kHeapMinSymbols = 64;

}  // namespace

struct BpeTokenizer::Impl {
  std::string source;
  // Raw bytes of each model-vocabulary id; empty for ids that are added tokens or unused.
  std::vector<std::string> id_bytes;
  absl::flat_hash_map<std::string, TokenId> bytes_to_id;
  std::array<TokenId, 256> byte_id{};
  absl::flat_hash_map<uint64_t, Merge> merges;
  bool ignore_merges = false;
  bool nfc = false;
  SplitPattern pattern;

  std::vector<std::unique_ptr<AddedToken>> added;
  absl::flat_hash_map<TokenId, const AddedToken*> added_by_id;
  absl::flat_hash_map<std::string, TokenId> added_by_content;
  AddedTokenMatcher raw_matcher;         // normalized: false, matched on the input text
  AddedTokenMatcher normalized_matcher;  // normalized: true, matched after NFC
  int64_t vocab_size = 0;
  SpecialTokenIds specials;

  mutable std::mutex cache_mu;
  mutable absl::flat_hash_map<std::string, std::vector<TokenId>> cache;

  void EncodeText(std::string_view text, std::vector<TokenId>& out) const;
  void EncodePieces(std::string_view text, std::vector<TokenId>& out) const;
  void EncodePiece(std::string_view piece, std::vector<TokenId>& out) const;
  void Bpe(std::string_view piece, std::vector<TokenId>& out) const;
  std::optional<TokenId> Lookup(std::string_view text) const;
};

void BpeTokenizer::Impl::EncodeText(std::string_view text, std::vector<TokenId>& out) const {
  std::string normalized;
  if (nfc && !unicode::IsNfcQuick(text)) {
    normalized = unicode::Nfc(text);
    text = normalized;
  }
  if (normalized_matcher.empty()) {
    EncodePieces(text, out);
    return;
  }
  SplitOnAddedTokens(
      normalized_matcher, text, [&](std::string_view segment) { EncodePieces(segment, out); },
      [&](TokenId id) { out.push_back(id); });
}

void BpeTokenizer::Impl::EncodePieces(std::string_view text, std::vector<TokenId>& out) const {
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = PieceLengthAt(text, pos, pattern);
    EncodePiece(text.substr(pos, len), out);
    pos += len;
  }
}

void BpeTokenizer::Impl::EncodePiece(std::string_view piece, std::vector<TokenId>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_id[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (ignore_merges) {
    if (auto it = bytes_to_id.find(absl::string_view(piece.data(), piece.size()));
        it != bytes_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (piece.size() > kMaxCachedPieceBytes) {
    Bpe(piece, out);
    return;
  }
  const absl::string_view key(piece.data(), piece.size());
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (auto it = cache.find(key); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  Bpe(piece, out);
  std::vector<TokenId> ids(out.begin() + first, out.end());
  std::lock_guard<std::mutex> lock(cache_mu);
  if (cache.size() >= kMaxCacheEntries) cache.clear();  // bounded; hot pieces come back fast
  cache.emplace(std::string(piece), std::move(ids));
}

// Merges the bytes of `piece` by rank: repeatedly the lowest-ranked adjacent pair, the leftmost
// among equals, exactly as HF's Word::merge_all.
void BpeTokenizer::Impl::Bpe(std::string_view piece, std::vector<TokenId>& out) const {
  const int n = static_cast<int>(piece.size());
  std::vector<TokenId> ids(n);
  std::vector<int32_t> next(n), prev(n);
  for (int i = 0; i < n; ++i) {
    ids[i] = byte_id[static_cast<uint8_t>(piece[i])];
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const auto find_merge = [&](int i) -> const Merge* {
    if (i < 0 || next[i] < 0) return nullptr;
    auto it = merges.find(PairKey(ids[i], ids[next[i]]));
    return it == merges.end() ? nullptr : &it->second;
  };
  // Joins symbol i with its right neighbour into `merged`.
  const auto join = [&](int i, TokenId merged) {
    const int j = next[i];
    ids[i] = merged;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    ids[j] = -1;
  };

  if (static_cast<size_t>(n) < kHeapMinSymbols) {
    // Rank of the pair starting at each live symbol (INT32_MAX: no merge).
    std::vector<int32_t> rank(n, INT32_MAX);
    std::vector<TokenId> merged(n, -1);
    const auto refresh = [&](int i) {
      if (i < 0) return;
      const Merge* m = find_merge(i);
      rank[i] = m ? m->rank : INT32_MAX;
      merged[i] = m ? m->merged : -1;
    };
    for (int i = 0; i < n; ++i) refresh(i);
    for (;;) {
      int best = -1;
      for (int i = 0; i >= 0; i = next[i]) {
        if (rank[i] != INT32_MAX && (best < 0 || rank[i] < rank[best])) best = i;
      }
      if (best < 0) break;
      join(best, merged[best]);
      refresh(best);
      refresh(prev[best]);
    }
  } else {
    struct Candidate {
      int32_t rank;
      int32_t pos;
      TokenId left, right, merged;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    const auto push = [&](int i) {
      if (const Merge* m = find_merge(i)) heap.push({m->rank, i, ids[i], ids[next[i]], m->merged});
    };
    for (int i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
      const Candidate c = heap.top();
      heap.pop();
      // Stale if either side has merged since the candidate was pushed.
      if (ids[c.pos] != c.left || next[c.pos] < 0 || ids[next[c.pos]] != c.right) continue;
      join(c.pos, c.merged);
      push(prev[c.pos]);
      push(c.pos);
    }
  }
  for (int i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

std::optional<TokenId> BpeTokenizer::Impl::Lookup(std::string_view text) const {
  if (auto it = added_by_content.find(absl::string_view(text.data(), text.size()));
      it != added_by_content.end()) {
    return it->second;
  }
  if (auto bytes = ByteLevelToBytes(text)) {
    if (auto it = bytes_to_id.find(*bytes); it != bytes_to_id.end()) return it->second;
  }
  return std::nullopt;
}

BpeTokenizer::BpeTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpeTokenizer::~BpeTokenizer() = default;

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJson(
    const std::string& tokenizer_json, const std::string& config_json, const std::string& source) {
  TIDAL_ASSIGN_OR_RETURN(TokenizerJson parsed, ParseTokenizerJson(tokenizer_json, source));
  const Json& root = parsed.root;
  const Json& model = parsed.model;
  const auto unsupported = [&](const std::string& key, const Json& value) {
    return absl::UnimplementedError(absl::StrCat(source, ": ", key, " = ",
                                                 value.dump().substr(0, 300),
                                                 " is not supported by tidal's BPE tokenizer"));
  };
  const auto invalid = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  auto impl = std::make_unique<Impl>();
  impl->source = source;

  try {
    // model
    if (!parsed.has_vocab) return invalid("missing object 'model.vocab'");
    if (!parsed.has_merges) return invalid("missing array 'model.merges'");
    if (model.value("type", "") != "BPE")
      return unsupported("model.type", model.value("type", Json()));
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && !model[key].is_null() && model[key] != "") {
        return unsupported(absl::StrCat("model.", key), model[key]);
      }
    }
    if (model.contains("dropout") && !model["dropout"].is_null())
      return unsupported("model.dropout", model["dropout"]);
    if (model.value("byte_fallback", false))
      return unsupported("model.byte_fallback", model["byte_fallback"]);
    impl->ignore_merges = model.value("ignore_merges", false);

    // normalizer
    const Json normalizer = root.value("normalizer", Json());
    if (!normalizer.is_null()) {
      if (normalizer.value("type", "") == "NFC") {
        impl->nfc = true;
      } else {
        return unsupported("normalizer", normalizer);
      }
    }

    // pre_tokenizer: Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)]
    const Json pre = root.value("pre_tokenizer", Json());
    const bool shape_ok = pre.is_object() && pre.value("type", "") == "Sequence" &&
                          pre.contains("pretokenizers") && pre["pretokenizers"].size() == 2 &&
                          pre["pretokenizers"][0].value("type", "") == "Split" &&
                          pre["pretokenizers"][1].value("type", "") == "ByteLevel";
    if (!shape_ok) return unsupported("pre_tokenizer", pre);
    const Json& split = pre["pretokenizers"][0];
    const Json& byte_level = pre["pretokenizers"][1];
    if (split.value("behavior", "") != "Isolated" || split.value("invert", false) ||
        !split.contains("pattern") || !split["pattern"].contains("Regex")) {
      return unsupported("pre_tokenizer.pretokenizers[0]", split);
    }
    if (byte_level.value("use_regex", true) || byte_level.value("add_prefix_space", false)) {
      return unsupported("pre_tokenizer.pretokenizers[1]", byte_level);
    }
    auto pattern = SplitPatternFromRegex(split["pattern"]["Regex"].get<std::string>());
    if (!pattern.ok())
      return absl::UnimplementedError(absl::StrCat(source, ": ", pattern.status().message()));
    impl->pattern = *pattern;

    const Json decoder = root.value("decoder", Json());
    if (!decoder.is_null() && decoder.value("type", "") != "ByteLevel")
      return unsupported("decoder", decoder);

    // vocab
    TokenId max_id = -1;
    impl->bytes_to_id.reserve(parsed.vocab.size());
    for (auto& [token, id64] : parsed.vocab) {
      if (id64 < 0 || id64 > INT32_MAX) {
        return invalid(absl::StrCat("model.vocab['", token, "'] is not a valid id: ", id64));
      }
      const auto id = static_cast<TokenId>(id64);
      auto bytes = ByteLevelToBytes(token);
      if (!bytes)
        return invalid(
            absl::StrCat("model.vocab token '", token, "' (id ", id, ") is not byte-level"));
      if (static_cast<size_t>(id) >= impl->id_bytes.size()) impl->id_bytes.resize(id + 1);
      impl->id_bytes[id] = *bytes;
      impl->bytes_to_id.emplace(std::move(*bytes), id);
      max_id = std::max(max_id, id);
    }
    parsed.vocab = {};
    for (int b = 0; b < 256; ++b) {
      auto it = impl->bytes_to_id.find(std::string(1, static_cast<char>(b)));
      if (it == impl->bytes_to_id.end()) {
        return invalid(absl::StrCat("model.vocab lacks the single-byte token for byte ", b));
      }
      impl->byte_id[b] = it->second;
    }

    // merges
    impl->merges.reserve(parsed.merges.size());
    std::string joined;
    for (size_t rank = 0; rank < parsed.merges.size(); ++rank) {
      // Plain references, not a structured binding: lambdas may not capture bindings before
      // clang 16 (the fuzz build uses Debian's clang 14).
      const std::string& left = parsed.merges[rank].first;
      const std::string& right = parsed.merges[rank].second;
      auto lb = ByteLevelToBytes(left), rb = ByteLevelToBytes(right);
      const auto describe = [&] {
        return absl::StrCat("model.merges[", rank, "] [\"", left, "\", \"", right, "\"]");
      };
      if (!lb || !rb) return invalid(absl::StrCat(describe(), " is not byte-level"));
      joined = *lb + *rb;
      auto li = impl->bytes_to_id.find(*lb), ri = impl->bytes_to_id.find(*rb),
           mi = impl->bytes_to_id.find(joined);
      if (li == impl->bytes_to_id.end() || ri == impl->bytes_to_id.end() ||
          mi == impl->bytes_to_id.end()) {
        return invalid(absl::StrCat(describe(), ": a part or the result is not in model.vocab"));
      }
      // Duplicate pairs keep their first (lowest) rank, as HF does.
      impl->merges.emplace(PairKey(li->second, ri->second),
                           Merge{static_cast<int32_t>(rank), mi->second});
    }

    // added tokens
    if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
      for (const Json& t : root["added_tokens"]) {
        if (!t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
            !t["content"].is_string()) {
          return invalid(absl::StrCat(
              "added_tokens entry lacks an integer 'id' or string 'content': ", t.dump()));
        }
        for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
          if (t.value(flag, false))
            return unsupported(
                absl::StrCat("added_tokens[", t["content"].get<std::string>(), "].", flag),
                t[flag]);
        }
        auto token = std::make_unique<AddedToken>();
        token->content = t["content"].get<std::string>();
        token->id = t["id"].get<TokenId>();
        token->special = t.value("special", false);
        if (token->content.empty() || token->id < 0)
          return invalid(absl::StrCat("added token with empty content or negative id: ", t.dump()));
        max_id = std::max(max_id, token->id);
        (t.value("normalized", false) ? impl->normalized_matcher : impl->raw_matcher)
            .Add(token.get());
        impl->added_by_id[token->id] = token.get();
        impl->added_by_content[token->content] = token->id;
        impl->added.push_back(std::move(token));
      }
    }
    impl->vocab_size = static_cast<int64_t>(max_id) + 1;
  } catch (const Json::exception& e) {
    return invalid(absl::StrCat("unexpected structure: ", e.what()));
  }

  // Special token ids from tokenizer_config.json.
  if (!config_json.empty()) {
    Json config;
    try {
      config = Json::parse(config_json);
    } catch (const Json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, " tokenizer_config.json: not valid JSON: ", e.what()));
    }
    const auto resolve = [&](const char* key, std::optional<TokenId>& slot) -> absl::Status {
      const std::optional<std::string> text = TokenText(config, key);
      if (!text) return absl::OkStatus();
      const std::optional<TokenId> id = impl->Lookup(*text);
      if (!id) {
        return absl::InvalidArgumentError(absl::StrCat(source, " tokenizer_config.json: ", key,
                                                       " '", *text,
                                                       "' is not a token of the vocabulary"));
      }
      slot = id;
      return absl::OkStatus();
    };
    TIDAL_RETURN_IF_ERROR(resolve("eos_token", impl->specials.eos));
    TIDAL_RETURN_IF_ERROR(resolve("pad_token", impl->specials.pad));
    TIDAL_RETURN_IF_ERROR(resolve("bos_token", impl->specials.bos));
  }
  if (impl->specials.eos) impl->specials.stop.push_back(*impl->specials.eos);
  // End-of-text / end-of-turn tokens of the families tidal supports also stop generation.
  for (const char* text : {"<|endoftext|>", "<|im_end|>", "<|end_of_text|>", "<|eot_id|>"}) {
    auto it = impl->added_by_content.find(text);
    if (it != impl->added_by_content.end() && impl->added_by_id.at(it->second)->special) {
      impl->specials.stop.push_back(it->second);
    }
  }
  std::sort(impl->specials.stop.begin(), impl->specials.stop.end());
  impl->specials.stop.erase(std::unique(impl->specials.stop.begin(), impl->specials.stop.end()),
                            impl->specials.stop.end());
  return std::unique_ptr<BpeTokenizer>(new BpeTokenizer(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Load(const std::string& dir) {
  const std::string json_path = dir + "/tokenizer.json";
  TIDAL_ASSIGN_OR_RETURN(std::string json, ReadFile(json_path));
  std::string config;
  if (auto c = ReadFile(dir + "/tokenizer_config.json"); c.ok()) config = std::move(*c);
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> tok, FromJson(json, config, json_path));
  tok->impl_->source = dir;
  // generation_config.json's eos_token_id (an id or a list) lists what the model was trained to
  // stop on.
  if (auto g = ReadFile(dir + "/generation_config.json"); g.ok()) {
    const Json gen = Json::parse(*g, nullptr, /*allow_exceptions=*/false);
    if (gen.is_discarded()) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, "/generation_config.json: not valid JSON"));
    }
    auto& stop = tok->impl_->specials.stop;
    const Json eos = gen.value("eos_token_id", Json());
    for (const Json& e : eos.is_array() ? eos : Json::array({eos})) {
      if (e.is_number_integer()) stop.push_back(e.get<TokenId>());
    }
    std::sort(stop.begin(), stop.end());
    stop.erase(std::unique(stop.begin(), stop.end()), stop.end());
  }
  return tok;
}

std::vector<TokenId> BpeTokenizer::Encode(std::string_view text) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  SplitOnAddedTokens(
      impl_->raw_matcher, text, [&](std::string_view segment) { impl_->EncodeText(segment, out); },
      [&](TokenId id) { out.push_back(id); });
  return out;
}

std::string BpeTokenizer::DecodeImpl(std::span<const TokenId> ids, bool skip_special_tokens) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (TokenId id : ids) {
    if (id < 0 || id >= impl_->vocab_size) continue;
    if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) {
      if (!(skip_special_tokens && it->second->special)) bytes += it->second->content;
    } else if (static_cast<size_t>(id) < impl_->id_bytes.size()) {
      bytes += impl_->id_bytes[id];
    }
  }
  return unicode::ToValidUtf8(bytes);
}

int64_t BpeTokenizer::VocabSize() const { return impl_->vocab_size; }

std::optional<std::string> BpeTokenizer::IdToToken(TokenId id) const {
  if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end())
    return it->second->content;
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_bytes.size() || impl_->id_bytes[id].empty())
    return std::nullopt;
  return BytesToByteLevel(impl_->id_bytes[id]);
}

std::optional<TokenId> BpeTokenizer::TokenToId(std::string_view token) const {
  return impl_->Lookup(token);
}

bool BpeTokenizer::IsSpecial(TokenId id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && it->second->special;
}

const SpecialTokenIds& BpeTokenizer::Specials() const { return impl_->specials; }

std::string BpeTokenizer::Describe() const {
  return absl::StrCat("byte-level BPE from ", impl_->source, " (", impl_->vocab_size, " ids, ",
                      impl_->merges.size(), " merges, ", impl_->added.size(), " added tokens",
                      impl_->nfc ? ", NFC" : "", ")");
}

}  // namespace tidal
