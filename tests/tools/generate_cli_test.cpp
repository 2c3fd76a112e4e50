// `tidal generate` end to end: the binary on an exported model directory (weights + tokenizer
// files), prompts from arguments, a JSONL file and stdin; greedy output equals tidal's own
// forward pass; sampling flags, n, stop strings and errors.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/byte_tokenizer.h"
#include "core/chat_template.h"
#include "core/hf_tokenizer_files.h"
#include "core/model.h"
#include "tests/core/temp_dir.h"

namespace tidal {
namespace {

using Json = nlohmann::json;

struct Result {
  int rc = -1;
  std::string out;
};

Result Shell(const std::string& cmd) {
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::vector<Json> Lines(const std::string& text) {
  std::vector<Json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(Json::parse(line));
  }
  return out;
}

class GenerateCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelConfig config = TinyQwen2Config(32, 2, 4, 2, kByteVocabSize);
    config.eos_token_ids = {ByteTokenizer::kEndOfText};
    model_ = Model::RandomInit(config, 11);
    ASSERT_TRUE(model_.SaveHf(dir_.path()).ok());
    ASSERT_TRUE(WriteHfTokenizerFiles(dir_.path(), {.tokenizer_spec = "byte"}, tok_).ok());
  }
  // stdout only (JSONL); `with_stderr` adds the log and error lines.
  Result Generate(const std::string& args, bool with_stderr = false) {
    return Shell(std::string(TIDAL_BIN) + " generate " + dir_.path() + " " + args +
                 (with_stderr ? " 2>&1" : " 2>/dev/null"));
  }
  // Greedy continuation by full forward passes, stopping after an end token like the engine.
  std::vector<int32_t> Greedy(const std::string& prompt, int max_new) {
    std::vector<int64_t> ids;
    for (int32_t t : tok_.Encode(prompt)) ids.push_back(t);
    std::vector<int32_t> out;
    for (int i = 0; i < max_new; ++i) {
      at::Tensor t = at::tensor(ids, at::kLong);
      at::Tensor cu = at::tensor({int64_t{0}, static_cast<int64_t>(ids.size())}, at::kLong);
      const int32_t next = static_cast<int32_t>(model_.Logits(t, cu)[-1].argmax().item<int64_t>());
      out.push_back(next);
      ids.push_back(next);
      if (next == ByteTokenizer::kEndOfText || next == ByteTokenizer::kImEnd) break;
    }
    return out;
  }
  testing_util::TempDir dir_;
  ByteTokenizer tok_;
  Model model_ = Model::RandomInit(TinyQwen2Config(8, 1, 2, 1, 16), 1);
};

TEST_F(GenerateCliTest, GreedyFromArgumentsMatchesTheModel) {
  Result r = Generate("'count r in strawberry:' 'abc' --temperature 0 --max-new-tokens 10 --tokens --logprobs");
  ASSERT_EQ(r.rc, 0) << r.out;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  const std::vector<std::string> prompts = {"count r in strawberry:", "abc"};
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(lines[i]["index"], i);
    EXPECT_EQ(lines[i]["prompt"], prompts[i]);
    auto tokens = lines[i]["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokens, Greedy(prompts[i], 10)) << lines[i].dump();
    EXPECT_EQ(lines[i]["text"], tok_.Decode(tokens, /*skip_special_tokens=*/true));
    EXPECT_EQ(lines[i]["completion_tokens"], tokens.size());
    EXPECT_EQ(lines[i]["logprobs"].size(), tokens.size());
    EXPECT_EQ(lines[i]["prompt_tokens"], tok_.Encode(prompts[i]).size());
  }
}

TEST_F(GenerateCliTest, FileAndStdinPromptsWithChatAndSampling) {
  const std::string file = dir_.path() + "/prompts.jsonl";
  std::ofstream(file) << "plain text line\n"
                      << R"({"prompt": "json prompt"})" << "\n"
                      << R"({"messages": [{"role": "user", "content": "hi"}]})" << "\n";
  Result r = Generate("--file " + file + " -n 3 --temperature 1 --top-p 0.9 --seed 5 --max-new-tokens 6 --tokens");
  ASSERT_EQ(r.rc, 0) << r.out;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 9u) << r.out;
  EXPECT_EQ(lines[0]["prompt"], "plain text line");
  EXPECT_EQ(lines[3]["prompt"], "json prompt");
  std::vector<ChatMessage> chat = {{.role = "user", .content = "hi"}};
  EXPECT_EQ(lines[6]["prompt"], *RenderQwenChat(chat));
  EXPECT_EQ(lines[7]["sample"], 1);
  // Same seed -> same samples.
  Result again = Generate("--file " + file + " -n 3 --temperature 1 --top-p 0.9 --seed 5 --max-new-tokens 6 --tokens");
  EXPECT_EQ(again.out, r.out);

  // stdin, --chat with a system message, output to a file.
  const std::string out = dir_.path() + "/out.jsonl";
  r = Shell("printf 'first\\nsecond\\n' | " + std::string(TIDAL_BIN) + " generate " + dir_.path() +
            " --chat --system 'be brief' --temperature 0 --max-new-tokens 4 --out " + out + " 2>/dev/null");
  ASSERT_EQ(r.rc, 0) << r.out;
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  lines = Lines(ss.str());
  ASSERT_EQ(lines.size(), 2u);
  std::vector<ChatMessage> second = {{.role = "system", .content = "be brief"},
                                     {.role = "user", .content = "second"}};
  EXPECT_EQ(lines[1]["prompt"], *RenderQwenChat(second));
}

TEST_F(GenerateCliTest, StopStringEndsTheCompletion) {
  // Greedy text of the prompt, then stop at its second character: the engine must stop there.
  auto greedy = Greedy("xyz", 12);
  std::string text;
  for (int32_t t : greedy) {
    if (t < 256) text.push_back(static_cast<char>(t));
  }
  if (text.size() < 3) GTEST_SKIP() << "greedy continuation too short for a stop string";
  const std::string stop = text.substr(1, 1);
  Result r = Generate("xyz --temperature 0 --max-new-tokens 12 --ignore-eos --stop '" + stop + "'");
  ASSERT_EQ(r.rc, 0) << r.out;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["finish_reason"], "stop") << r.out;
  EXPECT_EQ(lines[0]["stop"], stop);
  const std::string got = lines[0]["text"];
  EXPECT_EQ(got.substr(got.size() - 1), stop);
  EXPECT_LE(got.size(), text.size());
}

TEST_F(GenerateCliTest, ErrorsNameTheProblem) {
  Result r = Generate("abc --temperature -1", /*with_stderr=*/true);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("temperature"), std::string::npos) << r.out;
  r = Generate("--file /nonexistent/prompts.txt", /*with_stderr=*/true);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("/nonexistent/prompts.txt"), std::string::npos) << r.out;
  testing_util::TempDir bare;
  ASSERT_TRUE(model_.SaveHf(bare.path()).ok());
  r = Shell(std::string(TIDAL_BIN) + " generate " + bare.path() + " abc 2>&1");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("tokenizer.json"), std::string::npos) << r.out;
  r = Shell(std::string(TIDAL_BIN) + " generate " + bare.path() + " abc --tokenizer byte --max-new-tokens 2 2>/dev/null");
  EXPECT_EQ(r.rc, 0) << r.out;
}

}  // namespace
}  // namespace tidal
