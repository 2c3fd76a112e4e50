// Model parity against Hugging Face transformers (the reference implementation), driven through
// the `tidal` binary by tools/parity/model_parity.py; plus the export direction: checkpoints
// written by tidal's Model::SaveHf load unchanged in transformers and give the same logits.
#include <ftw.h>
#include "core/remove_tree.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/model.h"

namespace tidal {
namespace {

struct Result {
  int rc = -1;
  std::string output;
};

Result RunShell(const std::string& cmd) {
  Result r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// std::filesystem::remove_all inside libtorch.so crashes with Debian 12's libstdc++.
void RemoveTree(const std::string& path) { (void)tidal::RemoveTree(path); }

std::string ParityCommand() {
  return std::string(TIDAL_PYTHON) + " " + TIDAL_SOURCE_DIR + "/tools/parity/model_parity.py --tidal " +
         TIDAL_BIN;
}

bool HavePython() {
  return std::filesystem::exists(TIDAL_PYTHON) &&
         RunShell(std::string(TIDAL_PYTHON) + " -c 'import transformers, safetensors'").rc == 0;
}

TEST(ModelParityTest, MatchesTransformersOnCpu) {
  if (!HavePython()) GTEST_SKIP() << "no python with transformers at " << TIDAL_PYTHON;
  Result r = RunShell(ParityCommand() + " --device cpu");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("all passed"), std::string::npos) << r.output;
  std::cout << r.output.substr(r.output.find("PASS") == std::string::npos ? 0 : r.output.find("PASS"));
}

TEST(ModelParityTest, TidalExportLoadsUnchangedInTransformers) {
  if (!HavePython()) GTEST_SKIP() << "no python with transformers at " << TIDAL_PYTHON;
  const std::string root = std::filesystem::temp_directory_path().string() + "/tidal_export_" +
                           std::to_string(::getpid());
  ModelConfig qwen2 = TinyQwen2Config(64, 2, 4, 2, 131);
  qwen2.rope_theta = 1e6;
  ModelConfig qwen3 = TinyQwen2Config(48, 2, 6, 2, 99);
  qwen3.model_type = "qwen3";
  qwen3.attention_bias = false;
  qwen3.qk_norm = true;
  qwen3.head_dim = 16;
  qwen3.tie_word_embeddings = false;
  ModelConfig llama = TinyQwen2Config(64, 2, 4, 1, 80);
  llama.model_type = "llama";
  llama.attention_bias = false;
  std::string args;
  int seed = 0;
  for (const ModelConfig& c : {qwen2, qwen3, llama}) {
    Model m = Model::RandomInit(c, ++seed);
    // Norm weights and biases away from their init values, so a mis-wired one shows.
    for (auto& [name, t] : m.weights()) {
      if (t.dim() == 1) t.add_(at::randn(t.sizes()) * 0.2);
    }
    const std::string dir = root + "/" + c.model_type;
    ASSERT_TRUE(m.SaveHf(dir).ok()) << dir;
    args += " --export-check " + dir;
  }
  Result r = RunShell(ParityCommand() + " --cases '' " + args);
  RemoveTree(root);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("PASS export:llama"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS export:qwen3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS export:qwen2"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tidal
