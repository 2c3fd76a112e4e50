// libFuzzer target: a Hugging Face tokenizer.json (vocab, merges, added tokens, pre-tokenizer,
// normalizer) loaded by BpeTokenizer::FromJson; when it loads, a fixed text and the input's own
// tail are encoded and decoded. Any status is fine; a crash or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto tok = tidal::BpeTokenizer::FromJson(text, "", "fuzz/tokenizer.json");
  if (!tok.ok()) return 0;
  for (const std::string& s : {std::string("Hello, world! 123 \xe4\xbd\xa0\xe5\xa5\xbd <|im_end|>"),
                               text.substr(text.size() > 64 ? text.size() - 64 : 0)}) {
    std::vector<tidal::TokenId> ids = (*tok)->Encode(s);
    for (tidal::TokenId id : ids) {
      if (id < 0 || id >= (*tok)->VocabSize()) __builtin_trap();  // ids must be in the vocab
    }
    (void)(*tok)->Decode(ids);
  }
  return 0;
}
