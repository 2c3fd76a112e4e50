// core/hf_tokenizer_files.h: the exported tokenizer files reproduce the run's tokenizer, in
// tidal's own reader and in transformers (AutoTokenizer + AutoModelForCausalLM + generate).
#include "core/hf_tokenizer_files.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/bpe_tokenizer.h"
#include "core/byte_tokenizer.h"
#include "core/chat_template.h"
#include "core/model.h"
#include "tests/core/temp_dir.h"

namespace tidal {
namespace {

using Json = nlohmann::json;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Shell(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = ::pclose(p);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

bool HaveTransformers() {
  int rc = -1;
  Shell(std::string(TIDAL_PYTHON) + " -c 'import transformers, tokenizers' 2>/dev/null", &rc);
  return rc == 0;
}

std::vector<std::string> SampleTexts() {
  std::vector<std::string> texts = {"count r in strawberry: 3", "héllo wörld ✓ 日本",
                                    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
                                    "tabs\tand\nnewlines  ", "<|endoftext|><|reserved|>x"};
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i) {  // arbitrary bytes, not necessarily UTF-8
    std::string s;
    for (int j = 0; j < 24; ++j) s.push_back(static_cast<char>(rng() % 256));
    texts.push_back(s);
  }
  return texts;
}

TEST(HfTokenizerFiles, ByteTokenizerJsonEncodesLikeTheByteTokenizer) {
  ByteTokenizer byte;
  auto bpe = BpeTokenizer::FromJson(ByteTokenizerHfJson(), "", "byte tokenizer.json");
  ASSERT_TRUE(bpe.ok()) << bpe.status();
  EXPECT_EQ((*bpe)->VocabSize(), byte.VocabSize());
  for (const std::string& text : SampleTexts()) {
    std::vector<TokenId> ids = byte.Encode(text);
    EXPECT_EQ((*bpe)->Encode(text), ids) << text;
    EXPECT_EQ((*bpe)->Decode(ids), byte.Decode(ids)) << text;
  }
}

TEST(HfTokenizerFiles, ByteExportLoadsBackWithTheSameSpecials) {
  testing_util::TempDir dir;
  ByteTokenizer byte;
  ASSERT_TRUE(WriteHfTokenizerFiles(dir.path(), {.tokenizer_spec = "byte"}, byte).ok());
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.path() + "/" + f)) << f;
  }
  auto loaded = LoadTokenizer(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->Specials().eos, byte.Specials().eos);
  EXPECT_EQ((*loaded)->Specials().pad, byte.Specials().pad);
  EXPECT_EQ((*loaded)->Specials().stop, byte.Specials().stop);
  Json config = Json::parse(Slurp(dir.path() + "/tokenizer_config.json"));
  EXPECT_EQ(config["chat_template"], std::string(QwenChatTemplateJinja()));
  EXPECT_EQ(config["eos_token"], "<|endoftext|>");
  Json gen = Json::parse(Slurp(dir.path() + "/generation_config.json"));
  EXPECT_EQ(gen["eos_token_id"], Json({256, 258}));
  EXPECT_EQ(gen["pad_token_id"], 256);
}

TEST(HfTokenizerFiles, DirectoryTokenizerIsCopiedAndGetsAChatTemplate) {
  const std::string fixture = std::string(TIDAL_SOURCE_DIR) + "/tests/fixtures/qwen3-tokenizer";
  auto qwen = LoadTokenizer(fixture);
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  testing_util::TempDir dir;
  ASSERT_TRUE(WriteHfTokenizerFiles(dir.path(), {.tokenizer_spec = fixture}, **qwen).ok());
  EXPECT_EQ(Slurp(dir.path() + "/tokenizer.json"), Slurp(fixture + "/tokenizer.json"));
  EXPECT_EQ(Json::parse(Slurp(dir.path() + "/tokenizer_config.json")),
            Json::parse(Slurp(fixture + "/tokenizer_config.json")));
  Json gen = Json::parse(Slurp(dir.path() + "/generation_config.json"));
  EXPECT_EQ(gen["eos_token_id"], Json((*qwen)->Specials().stop));

  // A tokenizer dir with tokenizer.json alone: the config is generated, with the Qwen template.
  testing_util::TempDir bare, out;
  std::filesystem::copy_file(fixture + "/tokenizer.json", bare.path() + "/tokenizer.json");
  auto bare_tok = LoadTokenizer(bare.path());
  ASSERT_TRUE(bare_tok.ok()) << bare_tok.status();
  ASSERT_TRUE(WriteHfTokenizerFiles(out.path(), {.tokenizer_spec = bare.path()}, **bare_tok).ok());
  Json config = Json::parse(Slurp(out.path() + "/tokenizer_config.json"));
  EXPECT_EQ(config["chat_template"], std::string(QwenChatTemplateJinja()));
}

// The whole point: an exported directory is a complete HF model. transformers loads tokenizer and
// model from it, encodes like tidal, renders tidal's chat format, and greedy generate() continues
// exactly as tidal's own forward pass does.
TEST(HfTokenizerFiles, TransformersLoadsTokenizerAndModelAndGenerates) {
  if (!HaveTransformers()) GTEST_SKIP() << "no python with transformers at " << TIDAL_PYTHON;
  testing_util::TempDir dir;
  ByteTokenizer byte;
  ModelConfig config = TinyQwen2Config(32, 2, 4, 2, kByteVocabSize);
  config.eos_token_ids = {ByteTokenizer::kEndOfText};
  Model model = Model::RandomInit(config, 5);
  ASSERT_TRUE(model.SaveHf(dir.path()).ok());
  ASSERT_TRUE(WriteHfTokenizerFiles(dir.path(), {.tokenizer_spec = "byte"}, byte).ok());

  const std::string prompt = "count r in strawberry:";
  std::vector<ChatMessage> chat = {{.role = "system", .content = "be brief"},
                                   {.role = "user", .content = "héllo"}};
  const std::string rendered = *RenderQwenChat(chat);
  Json texts = Json::array();
  for (const std::string& t : SampleTexts()) {
    try {
      (void)Json(t).dump();  // strict: throws on bytes that are not UTF-8, which JSON cannot carry
      texts.push_back(t);
    } catch (const Json::exception&) {
    }
  }
  const std::string script = dir.path() + "/check.py";
  std::ofstream(script) << R"PY(
import json, sys, torch
from transformers import AutoTokenizer, AutoModelForCausalLM
d = sys.argv[1]
tok = AutoTokenizer.from_pretrained(d)
model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
texts = json.load(open(d + "/texts.json"))
out = {"vocab": len(tok), "encodings": [tok.encode(t, add_special_tokens=False) for t in texts]}
out["chat"] = tok.apply_chat_template([{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "héllo"}],
                                      tokenize=False, add_generation_prompt=True)
ids = tok("count r in strawberry:", return_tensors="pt").input_ids
gen = model.generate(ids, max_new_tokens=12, do_sample=False)
out["prompt_ids"] = ids[0].tolist()
out["generated"] = gen[0, ids.shape[1]:].tolist()
out["eos"] = model.generation_config.eos_token_id
print(json.dumps(out))
)PY";
  std::ofstream(dir.path() + "/texts.json") << texts.dump();
  int rc = -1;
  std::string out = Shell(std::string(TIDAL_PYTHON) + " " + script + " " + dir.path() + " 2>/dev/null", &rc);
  ASSERT_EQ(rc, 0) << out;
  Json j = Json::parse(out.substr(out.rfind("\n{") == std::string::npos ? 0 : out.rfind("\n{") + 1));
  EXPECT_EQ(j["vocab"], kByteVocabSize);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(j["encodings"][i].get<std::vector<TokenId>>(), byte.Encode(texts[i].get<std::string>()))
        << texts[i];
  }
  EXPECT_EQ(j["chat"], rendered);
  EXPECT_EQ(j["eos"], Json({256, 258}));
  const std::vector<TokenId> prompt_ids = byte.Encode(prompt);  // one vector: begin/end of the same one
  std::vector<int64_t> ids(prompt_ids.begin(), prompt_ids.end());
  EXPECT_EQ(j["prompt_ids"].get<std::vector<int64_t>>(), ids);

  // tidal's greedy continuation, one full forward per token.
  const auto generated = j["generated"].get<std::vector<int64_t>>();
  ASSERT_FALSE(generated.empty());
  for (int64_t expected : generated) {
    at::Tensor t = at::tensor(ids, at::kLong);
    at::Tensor cu = at::tensor({int64_t{0}, static_cast<int64_t>(ids.size())}, at::kLong);
    const int64_t next = model.Logits(t, cu)[-1].argmax().item<int64_t>();
    ASSERT_EQ(next, expected) << "after " << ids.size() << " tokens";
    ids.push_back(next);
  }
}

}  // namespace
}  // namespace tidal
