// Makes an exported Hugging Face model directory self-contained: beside config.json and the
// safetensors (core/hf_checkpoint.h) it writes tokenizer.json, tokenizer_config.json (with the
// chat template) and generation_config.json, so that transformers' AutoTokenizer,
// AutoModelForCausalLM and generate() work on the directory alone, and LoadTokenizer(dir)
// (core/tokenizer.h) gives the same ids as the run's tokenizer.
//
// What is written, by the run's tokenizer spec (recipe `model.tokenizer`):
//  - "byte": generated. tokenizer.json is a byte-level BPE whose vocabulary is the 256 bytes at
//    ids 0..255 with no merges and no normalizer, plus the four specials at 256..259: it encodes
//    and decodes exactly as ByteTokenizer does (every byte its own id, specials recognised).
//    tokenizer_config.json carries the Qwen chat template (core/chat_template.h).
//  - a directory: its tokenizer files are copied (tokenizer.json, tokenizer_config.json,
//    special_tokens_map.json, vocab.json, merges.txt, added_tokens.json, chat_template.jinja);
//    a tokenizer_config.json without any chat template gets the Qwen one, which is what tidal
//    renders for chat requests.
// generation_config.json is copied from `model_path` (or else the tokenizer directory) when one
// of them has it, else written from the tokenizer's stop ids (eos_token_id), pad and bos.
//
// Contract: touches only `dir` (which must exist); each file is written to a temporary name and
// renamed, so a reader never sees half a file. No global state; errors name the file.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "core/tokenizer.h"

namespace tidal {

struct HfTokenizerSource {
  std::string tokenizer_spec = "byte";  // "byte" or a directory holding tokenizer.json
  std::string model_path;               // the HF checkpoint the run started from, or ""
  int64_t max_positions = 4096;         // tokenizer_config.json model_max_length
};

absl::Status WriteHfTokenizerFiles(const std::string& dir, const HfTokenizerSource& source,
                                   const Tokenizer& tokenizer);

// The tokenizer.json text that reproduces the byte tokenizer (core/byte_tokenizer.h).
std::string ByteTokenizerHfJson();

}  // namespace tidal
