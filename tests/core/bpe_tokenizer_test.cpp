#include "core/bpe_tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

namespace tidal {
namespace {

using Json = nlohmann::json;

const std::string kQwen3Dir = std::string(TIDAL_SOURCE_DIR) + "/tests/fixtures/qwen3-tokenizer";

std::vector<Json> ReadJsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<Json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(Json::parse(line));
  }
  return rows;
}

// Loading parses an 11 MB json: once per test process.
const BpeTokenizer& Qwen3() {
  static const std::unique_ptr<BpeTokenizer> tok = [] {
    auto t = BpeTokenizer::Load(kQwen3Dir);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }();
  return *tok;
}

// encodings.jsonl: the reference encodings shipped with Qwen3's tokenizer data (HF tokenizers
// cross-checked): encode must give the ids and decode the text back, exactly.
TEST(BpeTokenizer, ReferenceEncodingsRoundTrip) {
  const auto rows = ReadJsonl(kQwen3Dir + "/encodings.jsonl");
  ASSERT_EQ(rows.size(), 65u);
  for (const Json& row : rows) {
    const std::string text = row["text"];
    const auto want = row["ids"].get<std::vector<TokenId>>();
    EXPECT_EQ(Qwen3().Encode(text), want) << "text: " << Json(text).dump();
    EXPECT_EQ(Qwen3().Decode(want), text);
  }
}

// extra_encodings.jsonl: edge cases and seeded random strings encoded by HF tokenizers
// (tools/parity/make_tokenizer_goldens.py). "decoded" is the NFC form of the text.
TEST(BpeTokenizer, ExtraGoldensMatchHfTokenizers) {
  const auto rows = ReadJsonl(kQwen3Dir + "/extra_encodings.jsonl");
  ASSERT_GT(rows.size(), 300u);
  int nfc_changed = 0;
  for (const Json& row : rows) {
    const std::string text = row["text"];
    const auto want = row["ids"].get<std::vector<TokenId>>();
    EXPECT_EQ(Qwen3().Encode(text), want) << "text: " << Json(text).dump();
    EXPECT_EQ(Qwen3().Decode(want), row["decoded"].get<std::string>())
        << "text: " << Json(text).dump();
    nfc_changed += row["decoded"] != row["text"];
  }
  EXPECT_GT(nfc_changed, 3) << "the goldens should exercise NFC";
}

// decodings.jsonl: HF decode of id sequences, including random ones that cut characters.
TEST(BpeTokenizer, DecodeMatchesHfIncludingPartialUtf8) {
  const auto rows = ReadJsonl(kQwen3Dir + "/decodings.jsonl");
  ASSERT_GT(rows.size(), 200u);
  for (const Json& row : rows) {
    const auto ids = row["ids"].get<std::vector<TokenId>>();
    EXPECT_EQ(Qwen3().Decode(ids, row["skip_special_tokens"].get<bool>()),
              row["text"].get<std::string>())
        << "ids: " << row["ids"].dump();
  }
}

TEST(BpeTokenizer, Qwen3SpecialTokens) {
  const BpeTokenizer& tok = Qwen3();
  EXPECT_EQ(tok.VocabSize(), 151669);
  EXPECT_EQ(tok.Specials().eos, 151645);  // <|im_end|>
  EXPECT_EQ(tok.Specials().pad, 151643);  // <|endoftext|>
  EXPECT_FALSE(tok.Specials().bos.has_value());
  EXPECT_EQ(tok.Specials().stop, (std::vector<TokenId>{151643, 151645}));
  EXPECT_TRUE(tok.IsSpecial(151644));
  EXPECT_FALSE(tok.IsSpecial(151667));  // <think> is an added token but not special
  EXPECT_FALSE(tok.IsSpecial(9707));
  EXPECT_EQ(tok.Encode("<|im_start|>"), (std::vector<TokenId>{151644}));
  EXPECT_TRUE(tok.Encode("").empty());
}

TEST(BpeTokenizer, TokenLookups) {
  const BpeTokenizer& tok = Qwen3();
  EXPECT_EQ(tok.IdToToken(9707), "Hello");
  EXPECT_EQ(tok.IdToToken(1879), "Ġworld");  // byte-level spelling, as in tokenizer.json
  EXPECT_EQ(tok.IdToToken(198), "Ċ");
  EXPECT_EQ(tok.IdToToken(151645), "<|im_end|>");
  EXPECT_EQ(tok.TokenToId("Ġworld"), 1879);
  EXPECT_EQ(tok.TokenToId("<think>"), 151667);
  EXPECT_FALSE(tok.TokenToId("not a token").has_value());
  EXPECT_FALSE(tok.IdToToken(151669).has_value());
  EXPECT_FALSE(tok.IdToToken(-3).has_value());
  // Ids past the vocabulary (Qwen3's embedding has 151936 rows) decode to nothing.
  EXPECT_EQ(tok.Decode(std::vector<TokenId>{9707, 151900, 0}), "Hello!");
}

TEST(BpeTokenizer, SkipSpecialTokensKeepsNonSpecialAddedTokens) {
  const BpeTokenizer& tok = Qwen3();
  const auto ids = tok.Encode("<|im_start|>assistant\n<think>\nx\n</think>\n\nok<|im_end|>");
  EXPECT_EQ(tok.Decode(ids, /*skip_special_tokens=*/true), "assistant\n<think>\nx\n</think>\n\nok");
}

TEST(BpeTokenizer, ConcurrentEncodesAgree) {
  const BpeTokenizer& tok = Qwen3();
  const auto rows = ReadJsonl(kQwen3Dir + "/extra_encodings.jsonl");
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (const Json& row : rows) {
          mismatches[t] +=
              tok.Encode(row["text"].get<std::string>()) != row["ids"].get<std::vector<TokenId>>();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, (std::vector<int>{0, 0, 0, 0}));
}

// A small synthetic tokenizer.json: 256 byte tokens, then the merges given.
Json TinyTokenizerJson(const std::vector<std::pair<std::string, std::string>>& merges) {
  // GPT-2 byte-level spelling of byte b.
  auto byte_level = [](int b) {
    static std::vector<std::string> names = [] {
      std::vector<std::string> out(256);
      int extra = 0;
      for (int c = 0; c < 256; ++c) {
        const bool printable =
            (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        const int cp = printable ? c : 256 + extra++;
        std::string s;
        if (cp < 0x80) {
          s.push_back(static_cast<char>(cp));
        } else {
          s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
          s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
        out[c] = s;
      }
      return out;
    }();
    return names[b];
  };
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level(b)] = b;
  Json merge_list = Json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
    merge_list.push_back({a, b});
  }
  return {
      {"version", "1.0"},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern",
            {{"Regex",
              R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", false},
           {"use_regex", false}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens",
       Json::array(
           {{{"id", 1000}, {"content", "<eos>"}, {"special", true}, {"normalized", false}}})},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}},
  };
}

TEST(BpeTokenizer, MergesApplyByRankThenLeftmost) {
  // "ab" outranks "bc"; in "abc" it wins although "bc" is also adjacent. In "aaaa" the
  // leftmost "aa" merges first, then the two "aa" tokens merge.
  const Json json =
      TinyTokenizerJson({{"a", "b"}, {"b", "c"}, {"a", "a"}, {"aa", "aa"}, {"ab", "c"}});
  auto tok = BpeTokenizer::FromJson(json.dump(), "", "tiny");
  ASSERT_TRUE(tok.ok()) << tok.status();
  const TokenId ab = *(*tok)->TokenToId("ab"), abc = *(*tok)->TokenToId("abc");
  const TokenId aa = *(*tok)->TokenToId("aa"), aaaa = *(*tok)->TokenToId("aaaa");
  EXPECT_EQ((*tok)->Encode("abc"), (std::vector<TokenId>{abc}));
  EXPECT_EQ((*tok)->Encode("abb"), (std::vector<TokenId>{ab, 'b'}));
  EXPECT_EQ((*tok)->Encode("aaa"), (std::vector<TokenId>{aa, 'a'}));
  EXPECT_EQ((*tok)->Encode("aaaaa"), (std::vector<TokenId>{aaaa, 'a'}));
  // Long pieces take the heap path: 201 'a' -> 50 x "aaaa" + "a".
  std::vector<TokenId> want(50, aaaa);
  want.push_back('a');
  EXPECT_EQ((*tok)->Encode(std::string(201, 'a')), want);
  EXPECT_EQ((*tok)->Encode("x<eos>y"), (std::vector<TokenId>{'x', 1000, 'y'}));
  EXPECT_EQ((*tok)->VocabSize(), 1001);
  EXPECT_FALSE((*tok)->Specials().eos.has_value());  // no tokenizer_config.json
}

TEST(BpeTokenizer, ConfigNamesSpecials) {
  const Json json = TinyTokenizerJson({});
  auto tok = BpeTokenizer::FromJson(
      json.dump(), R"({"eos_token": {"content": "<eos>"}, "pad_token": "<eos>"})", "tiny");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Specials().eos, 1000);
  EXPECT_EQ((*tok)->Specials().pad, 1000);
  EXPECT_EQ((*tok)->Specials().stop, (std::vector<TokenId>{1000}));
  auto bad = BpeTokenizer::FromJson(json.dump(), R"({"eos_token": "<nope>"})", "tiny");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("eos_token '<nope>'"), std::string::npos) << bad.status();
}

TEST(BpeTokenizer, ErrorsNameTheKeyAtFault) {
  const auto error_of = [](const Json& json) {
    auto tok = BpeTokenizer::FromJson(json.dump(), "", "t.json");
    EXPECT_FALSE(tok.ok());
    return std::string(tok.status().message());
  };
  Json j = TinyTokenizerJson({});
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_NE(error_of(j).find("normalizer"), std::string::npos);

  j = TinyTokenizerJson({});
  j["model"]["type"] = "WordPiece";
  EXPECT_NE(error_of(j).find("model.type"), std::string::npos);

  j = TinyTokenizerJson({});
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  EXPECT_NE(error_of(j).find("Split regex"), std::string::npos);

  j = TinyTokenizerJson({{"a", "b"}});
  j["model"]["merges"].push_back({"x", "zz"});
  EXPECT_NE(error_of(j).find("model.merges[1]"), std::string::npos);

  j = TinyTokenizerJson({});
  j["model"]["vocab"].erase("A");
  EXPECT_NE(error_of(j).find("byte 65"), std::string::npos);

  j = TinyTokenizerJson({});
  j["added_tokens"][0]["lstrip"] = true;
  EXPECT_NE(error_of(j).find("lstrip"), std::string::npos);

  auto not_json = BpeTokenizer::FromJson("{", "", "t.json");
  EXPECT_NE(not_json.status().message().find("t.json: invalid JSON"), std::string::npos)
      << not_json.status();
  auto missing = BpeTokenizer::Load("/nonexistent-dir");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tidal
