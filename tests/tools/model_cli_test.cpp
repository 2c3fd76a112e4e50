// `tidal model inspect` and `tidal model logits` end to end: output matches the library, and
// bad checkpoints fail with exit code 2 and a message naming the file or tensor at fault.
#include <ftw.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "core/remove_tree.h"
#include "core/model.h"
#include "core/safetensors.h"

namespace tidal {
namespace {

struct Result {
  int rc = -1;
  std::string out;
};

// stdout only unless `merge_stderr`.
Result Tidal(const std::string& args, bool merge_stderr = false) {
  Result r;
  std::string cmd = std::string(TIDAL_BIN) + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class ModelCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path().string() + "/tidal_model_cli_" +
           std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_TRUE(model_.SaveHf(dir_).ok());
  }
  void TearDown() override {
    (void)tidal::RemoveTree(dir_);
  }
  Model model_ = Model::RandomInit(TinyQwen2Config(32, 2, 4, 2, 50), 3);
  std::string dir_;
};

TEST_F(ModelCliTest, InspectReportsArchitectureAndParameters) {
  Result r = Tidal("model inspect --json " + dir_);
  ASSERT_EQ(r.rc, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  int64_t params = 0;
  for (const auto& [name, t] : model_.weights()) params += t.numel();
  EXPECT_EQ(j["parameters"], params);
  EXPECT_EQ(j["model_type"], "qwen2");
  EXPECT_EQ(j["num_key_value_heads"], 2);
  EXPECT_EQ(j["tie_word_embeddings"], true);
  EXPECT_EQ(j["tokenizer_json"], false);
  EXPECT_EQ(j["stored_dtypes"]["F32"], model_.weights().size());
  r = Tidal("model inspect " + dir_);
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("parameters:"), std::string::npos) << r.out;
}

TEST_F(ModelCliTest, LogitsMatchTheLibrary) {
  Result r = Tidal("model logits " + dir_ + " --ids 1,2,3,4,5 --seq-lens 3,2 --json --logprobs");
  ASSERT_EQ(r.rc, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  at::Tensor ids = at::tensor({1, 2, 3, 4, 5}, at::kLong), cu = at::tensor({0, 3, 5}, at::kLong);
  at::Tensor lp = at::log_softmax(model_.Logits(ids, cu), -1);
  ASSERT_EQ(j["logprobs"].size(), 5u);
  for (int64_t t = 0; t < 5; ++t) {
    for (int64_t v = 0; v < 50; ++v) {
      ASSERT_NEAR(j["logprobs"][t][v].get<double>(), lp[t][v].item<double>(), 1e-5) << t << "," << v;
    }
  }
  EXPECT_TRUE(j["token_logprobs"][2].is_null());
  EXPECT_TRUE(j["token_logprobs"][4].is_null());
  EXPECT_NEAR(j["token_logprobs"][0].get<double>(), lp[0][2].item<double>(), 1e-5);
  EXPECT_NEAR(j["token_logprobs"][3].get<double>(), lp[3][5].item<double>(), 1e-5);

  const std::string out = dir_ + "/out.safetensors";
  r = Tidal("model logits " + dir_ + " --ids 7,8,9 --dtype bf16 --out " + out);
  ASSERT_EQ(r.rc, 0);
  auto saved = LoadSafetensors(out);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->at("logits").sizes(), (std::vector<int64_t>{3, 50}));
  EXPECT_EQ(saved->at("logits").scalar_type(), at::kFloat);
}

TEST_F(ModelCliTest, BadInputsAndCheckpointsAreNamed) {
  Result r = Tidal("model logits " + dir_ + " --ids 1,99", true);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("token 99"), std::string::npos) << r.out;
  r = Tidal("model logits " + dir_ + " --ids 1,2 --seq-lens 3", true);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("--seq-lens"), std::string::npos) << r.out;

  NamedTensors w = model_.weights();
  w.erase("model.layers.1.self_attn.v_proj.bias");
  ASSERT_TRUE(SaveSafetensors(dir_ + "/model.safetensors", w).ok());
  for (const char* cmd : {"model inspect ", "model logits --ids 1 "}) {
    r = Tidal(cmd + dir_, true);
    EXPECT_EQ(r.rc, 2) << cmd;
    EXPECT_NE(r.out.find("missing tensors: model.layers.1.self_attn.v_proj.bias"), std::string::npos) << r.out;
  }
  std::filesystem::resize_file(dir_ + "/model.safetensors", 100);
  r = Tidal("model logits --ids 1 " + dir_, true);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("model.safetensors: truncated"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tidal
