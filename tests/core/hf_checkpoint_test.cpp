#include "core/hf_checkpoint.h"
#include "tests/core/temp_dir.h"

#include <gtest/gtest.h>
#include <ftw.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/safetensors.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;

// std::filesystem::remove_all resolves to a copy inside libtorch.so that calls a libstdc++
// symbol missing from Debian 12's GCC 12 runtime (null call -> SIGSEGV); walk the tree ourselves.
using testing_util::RemoveTree;


class HfCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("tidal_hf_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    RemoveTree(dir_);
  }
  void TearDown() override { RemoveTree(dir_); }
  // Saves a random model, then lets the test tamper with its tensors before writing them back.
  Model SaveWith(const std::function<void(NamedTensors&)>& tamper) {
    Model m = Model::RandomInit(TinyQwen2Config(32, 2, 4, 2, 40), 9);
    EXPECT_TRUE(m.SaveHf(dir_).ok());
    NamedTensors w = m.weights();
    tamper(w);
    EXPECT_TRUE(SaveSafetensors(dir_ + "/model.safetensors", w).ok());
    return m;
  }
  std::string dir_;
};

TEST_F(HfCheckpointTest, SaveLoadRoundTripGivesSameLogits) {
  Model m = Model::RandomInit(TinyQwen2Config(32, 2, 4, 2, 40), 9);
  ASSERT_TRUE(m.SaveHf(dir_).ok());
  EXPECT_TRUE(fs::exists(dir_ + "/config.json"));
  auto back = Model::LoadHf(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  at::Tensor ids = at::tensor({1, 2, 3, 39}, at::kLong), cu = at::tensor({0, 4}, at::kLong);
  EXPECT_TRUE(at::equal(m.Logits(ids, cu), back->Logits(ids, cu)));
  auto bf = Model::LoadHf(dir_, at::kBFloat16);
  ASSERT_TRUE(bf.ok());
  EXPECT_EQ(bf->weights().at("model.norm.weight").scalar_type(), at::kBFloat16);
  EXPECT_EQ(bf->config().torch_dtype, "bfloat16");
  EXPECT_FALSE(HasHfTokenizer(dir_));
}

TEST_F(HfCheckpointTest, MissingTensorIsNamed) {
  SaveWith([](NamedTensors& w) { w.erase("model.layers.1.mlp.down_proj.weight"); });
  auto s = Model::LoadHf(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("missing tensors: model.layers.1.mlp.down_proj.weight"), std::string::npos) << s;
  EXPECT_NE(s.message().find(dir_), std::string::npos) << s;
}

TEST_F(HfCheckpointTest, WrongShapeNamesExpectedAndFound) {
  SaveWith([](NamedTensors& w) { w["model.layers.0.self_attn.k_proj.weight"] = at::zeros({8, 32}); });
  auto s = Model::LoadHf(dir_).status();
  EXPECT_NE(s.message().find("model.layers.0.self_attn.k_proj.weight (expected [16, 32], found [8, 32])"),
            std::string::npos) << s;
}

TEST_F(HfCheckpointTest, UnexpectedTensorIsNamedButIgnorableOnesAreDropped) {
  SaveWith([](NamedTensors& w) {
    w["model.layers.0.self_attn.rotary_emb.inv_freq"] = at::ones({4});
    w["lm_head.weight"] = w.at("model.embed_tokens.weight").clone();  // tied copy: harmless
  });
  EXPECT_TRUE(Model::LoadHf(dir_).ok());
  SaveWith([](NamedTensors& w) { w["model.layers.7.mlp.gate_proj.weight"] = at::ones({4}); });
  auto s = Model::LoadHf(dir_).status();
  EXPECT_NE(s.message().find("unexpected tensors: model.layers.7.mlp.gate_proj.weight"), std::string::npos) << s;
}

TEST_F(HfCheckpointTest, TruncatedWeightsFileIsNamed) {
  SaveWith([](NamedTensors&) {});
  const std::string path = dir_ + "/model.safetensors";
  fs::resize_file(path, fs::file_size(path) - 100);
  auto s = Model::LoadHf(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.safetensors"), std::string::npos) << s;
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s;
}

TEST_F(HfCheckpointTest, ShardedCheckpointLoadsAndBadIndexIsNamed) {
  Model m = Model::RandomInit(TinyQwen2Config(32, 2, 4, 2, 40), 9);
  ASSERT_TRUE(m.SaveHf(dir_).ok());
  fs::remove(dir_ + "/model.safetensors");
  NamedTensors a, b;
  std::string index = R"({"metadata": {}, "weight_map": {)";
  bool first = true;
  for (const auto& [name, t] : m.weights()) {
    bool to_a = name.find("layers.1") == std::string::npos;
    (to_a ? a : b)[name] = t;
    index += (first ? "" : ",") + std::string("\"") + name + "\": \"" +
             (to_a ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors") + "\"";
    first = false;
  }
  index += "}}";
  ASSERT_TRUE(SaveSafetensors(dir_ + "/model-00001-of-00002.safetensors", a).ok());
  ASSERT_TRUE(SaveSafetensors(dir_ + "/model-00002-of-00002.safetensors", b).ok());
  std::ofstream(dir_ + "/model.safetensors.index.json") << index;
  auto back = Model::LoadHf(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  at::Tensor ids = at::tensor({5, 6, 7}, at::kLong), cu = at::tensor({0, 3}, at::kLong);
  EXPECT_TRUE(at::equal(m.Logits(ids, cu), back->Logits(ids, cu)));

  // The index names a tensor its shard lacks.
  b.erase("model.layers.1.mlp.up_proj.weight");
  ASSERT_TRUE(SaveSafetensors(dir_ + "/model-00002-of-00002.safetensors", b).ok());
  auto s = Model::LoadHf(dir_).status();
  EXPECT_NE(s.message().find("model.layers.1.mlp.up_proj.weight in model-00002-of-00002.safetensors"),
            std::string::npos) << s;
  fs::remove(dir_ + "/model-00002-of-00002.safetensors");
  s = Model::LoadHf(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("model-00002-of-00002.safetensors"), std::string::npos) << s;
}

TEST_F(HfCheckpointTest, MissingFilesAreNamed) {
  auto s = Model::LoadHf(dir_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("config.json"), std::string::npos) << s;
  fs::create_directories(dir_);
  std::ofstream(dir_ + "/config.json") << TinyQwen2Config(32, 2, 4, 2, 40).ToHfJson();
  s = Model::LoadHf(dir_).status();
  EXPECT_NE(s.message().find("model.safetensors"), std::string::npos) << s;
}

}  // namespace
}  // namespace tidal
