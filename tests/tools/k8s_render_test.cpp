// `tidal k8s render`: the manifests are well-formed Kubernetes objects (checked against the
// Kubernetes JSON schemas by kubernetes-validate, installed into .venv by tools/install_deps.sh),
// keep the server's secret key out of the workers' Secret, and describe the recipe's pool.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "core/remove_tree.h"
#include "tests/tools/tidal_process.h"

namespace tidal {
namespace {

using testing_util::ReadText;

std::string Sh(const std::string& cmd, int* code) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int status = pclose(p);
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class K8sRenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(TIDAL_BINARY_DIR) + "/e2e/k8s";
    (void)RemoveTree(dir_);
    std::filesystem::create_directories(dir_);
  }
  std::string dir_;
};

TEST_F(K8sRenderTest, RendersSchemaValidManifestsWithScopedSecrets) {
  int code = -1;
  const std::string recipe = std::string(TIDAL_SOURCE_DIR) + "/recipes/quickstart_ci.yaml";
  std::string out = Sh(std::string(TIDAL_BIN) + " k8s render " + recipe + " -o " + dir_ + "/m --image reg/tidal:1 " +
                           "pool.devices=cuda:0-3 pool.tags.rollout=3 pool.tags.train=1",
                       &code);
  ASSERT_EQ(code, 0) << out;
  const std::string m = dir_ + "/m/";
  for (const char* f : {"credentials-controller.yaml", "credentials-worker.yaml", "recipe.yaml", "storage.yaml",
                        "controller.yaml", "controller-service.yaml", "workers.yaml"}) {
    ASSERT_TRUE(std::filesystem::exists(m + f)) << f << "\n" << out;
  }

  YAML::Node job = YAML::LoadFile(m + "workers.yaml");
  EXPECT_EQ(job["kind"].as<std::string>(), "Job");
  EXPECT_EQ(job["spec"]["completionMode"].as<std::string>(), "Indexed");
  EXPECT_EQ(job["spec"]["completions"].as<int>(), 4);
  YAML::Node worker = job["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(worker["resources"]["limits"]["nvidia.com/gpu"].as<int>(), 1);
  EXPECT_EQ(worker["image"].as<std::string>(), "reg/tidal:1");

  // The workers' Secret has the run secret (derived tokens) but never the server's secret key.
  YAML::Node ws = YAML::LoadFile(m + "credentials-worker.yaml");
  const std::string wcreds = ws["stringData"]["credentials.json"].as<std::string>();
  EXPECT_EQ(wcreds.find("server_secret"), std::string::npos) << wcreds;
  EXPECT_NE(wcreds.find("\"secret\""), std::string::npos) << wcreds;
  YAML::Node cs = YAML::LoadFile(m + "credentials-controller.yaml");
  EXPECT_NE(cs["stringData"]["credentials.json"].as<std::string>().find("server_secret"), std::string::npos);

  // The ConfigMap's recipe is a valid recipe set up for external workers.
  YAML::Node cm = YAML::LoadFile(m + "recipe.yaml");
  const std::string resolved = dir_ + "/resolved.yaml";
  { std::ofstream(resolved) << cm["data"]["recipe.yaml"].as<std::string>(); }
  std::string v = Sh(std::string(TIDAL_BIN) + " validate " + resolved, &code);
  EXPECT_EQ(code, 0) << v;
  const std::string text = ReadText(resolved);
  EXPECT_NE(text.find("launch: external"), std::string::npos) << text;
  EXPECT_NE(text.find("bind: 0.0.0.0"), std::string::npos) << text;

  // The Kubernetes schemas (bundled by kubernetes-validate; no cluster needed).
  const std::string validator = std::string(TIDAL_SOURCE_DIR) + "/.venv/bin/kubernetes-validate";
  struct stat st;
  if (stat(validator.c_str(), &st) != 0) {
    GTEST_SKIP() << "kubernetes-validate is not installed in .venv (tools/install_deps.sh installs it)";
  }
  std::string check = Sh(validator + " --strict -k 1.30.0 " + m + "*.yaml", &code);
  EXPECT_EQ(code, 0) << check;
  EXPECT_EQ(check.find("INVALID"), std::string::npos) << check;
}

TEST_F(K8sRenderTest, RefusesACpuTrainGroupThatWouldSpanPods) {
  int code = -1;
  const std::string recipe = std::string(TIDAL_SOURCE_DIR) + "/recipes/quickstart_ci.yaml";
  std::string out = Sh(std::string(TIDAL_BIN) + " k8s render " + recipe + " -o " + dir_ + "/bad " +
                           "pool.devices=cpu:3 pool.tags.rollout=1 pool.tags.train=2",
                       &code);
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("launch: external"), std::string::npos) << out;
}

}  // namespace
}  // namespace tidal
