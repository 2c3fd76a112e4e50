#include "core/hf_tokenizer_files.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/bpe_tokenizer.h"
#include "core/byte_tokenizer.h"
#include "core/chat_template.h"

namespace tidal {
namespace {

using Json = nlohmann::json;

// Qwen2/Qwen3's split regex: with no merges the split cannot change any id, but tidal's
// tokenizer.json reader (core/bpe_tokenizer.h) accepts only this pre-tokenizer shape.
constexpr const char* kQwenSplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return s.str();
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  TIDAL_ASSIGN_OR_RETURN(std::string text, ReadFile(from));
  return WriteFileAtomic(to, text);
}

std::string Join(const std::string& dir, const char* name) { return dir + "/" + name; }

Json TokenText(const Tokenizer& tok, std::optional<TokenId> id) {
  if (!id) return nullptr;
  auto text = tok.IdToToken(*id);
  return text ? Json(*text) : Json(nullptr);
}

Json AddedTokensDecoder(const Tokenizer& tok) {
  Json decoder = Json::object();
  for (TokenId id = 0; id < tok.VocabSize(); ++id) {
    if (!tok.IsSpecial(id)) continue;
    auto text = tok.IdToToken(id);
    if (!text) continue;
    decoder[std::to_string(id)] = {{"content", *text}, {"lstrip", false}, {"normalized", false},
                                   {"rstrip", false},  {"single_word", false}, {"special", true}};
  }
  return decoder;
}

Json GeneratedTokenizerConfig(const Tokenizer& tok, int64_t max_positions) {
  const SpecialTokenIds& sp = tok.Specials();
  return Json{{"tokenizer_class", "PreTrainedTokenizerFast"},
              {"bos_token", TokenText(tok, sp.bos)},
              {"eos_token", TokenText(tok, sp.eos)},
              {"pad_token", TokenText(tok, sp.pad)},
              {"unk_token", nullptr},
              {"add_bos_token", false},
              {"add_prefix_space", false},
              {"clean_up_tokenization_spaces", false},
              {"split_special_tokens", false},
              {"model_max_length", max_positions},
              {"added_tokens_decoder", AddedTokensDecoder(tok)},
              {"chat_template", std::string(QwenChatTemplateJinja())}};
}

Json GeneratedGenerationConfig(const Tokenizer& tok) {
  const SpecialTokenIds& sp = tok.Specials();
  Json j{{"_from_model_config", false}};
  if (sp.bos) j["bos_token_id"] = *sp.bos;
  if (!sp.stop.empty()) {
    j["eos_token_id"] = sp.stop;
  } else if (sp.eos) {
    j["eos_token_id"] = *sp.eos;
  }
  if (sp.pad) j["pad_token_id"] = *sp.pad;
  return j;
}

}  // namespace

std::string ByteTokenizerHfJson() {
  ByteTokenizer tok;
  Json vocab = Json::object();
  Json added = Json::array();
  for (TokenId id = 0; id < tok.VocabSize(); ++id) {
    const std::string text = *tok.IdToToken(id);
    if (tok.IsSpecial(id)) {
      added.push_back({{"id", id}, {"content", text}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", true}});
    } else {
      vocab[BytesToByteLevel(text)] = id;
    }
  }
  const Json byte_level{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                        {"use_regex", false}};
  Json root{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         Json::array({Json{{"type", "Split"},
                           {"pattern", {{"Regex", kQwenSplitRegex}}},
                           {"behavior", "Isolated"},
                           {"invert", false}},
                      byte_level})}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
        {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}, {"fuse_unk", false},
        {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab},
        {"merges", Json::array()}}}};
  return root.dump(2);
}

absl::Status WriteHfTokenizerFiles(const std::string& dir, const HfTokenizerSource& source,
                                   const Tokenizer& tokenizer) {
  const bool byte = source.tokenizer_spec == "byte";
  std::string tokenizer_dir = byte ? "" : source.tokenizer_spec;
  if (byte) {
    TIDAL_RETURN_IF_ERROR(WriteFileAtomic(Join(dir, "tokenizer.json"), ByteTokenizerHfJson()));
    TIDAL_RETURN_IF_ERROR(WriteFileAtomic(
        Join(dir, "tokenizer_config.json"),
        GeneratedTokenizerConfig(tokenizer, source.max_positions).dump(2)));
  } else {
    for (const char* name : {"tokenizer.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                             "added_tokens.json", "chat_template.jinja"}) {
      const std::string from = Join(tokenizer_dir, name);
      if (IsFile(from)) TIDAL_RETURN_IF_ERROR(CopyFile(from, Join(dir, name)));
    }
    Json config;
    const std::string config_path = Join(tokenizer_dir, "tokenizer_config.json");
    if (IsFile(config_path)) {
      TIDAL_ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
      config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!config.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
      }
    } else {
      config = GeneratedTokenizerConfig(tokenizer, source.max_positions);
    }
    if (!config.contains("chat_template") && !IsFile(Join(tokenizer_dir, "chat_template.jinja"))) {
      config["chat_template"] = std::string(QwenChatTemplateJinja());
    }
    TIDAL_RETURN_IF_ERROR(WriteFileAtomic(Join(dir, "tokenizer_config.json"), config.dump(2)));
  }
  for (const std::string& from_dir : {source.model_path, tokenizer_dir}) {
    if (from_dir.empty()) continue;
    const std::string from = Join(from_dir, "generation_config.json");
    if (IsFile(from)) return CopyFile(from, Join(dir, "generation_config.json"));
  }
  return WriteFileAtomic(Join(dir, "generation_config.json"),
                         GeneratedGenerationConfig(tokenizer).dump(2));
}

}  // namespace tidal
