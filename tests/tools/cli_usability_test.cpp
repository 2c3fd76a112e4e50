// Everyday CLI conveniences: `tidal --version`, the bash completion script (valid bash that
// completes subcommands, options and recipe override keys), `tidal env check` determinism and
// Python environments.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/version.h"
#include "tests/envs/plugin_build.h"

namespace {

struct Result {
  int rc = -1;
  std::string out;
};

Result Shell(const std::string& cmd) {
  Result r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

const std::string kTidal = TIDAL_BIN;

TEST(CliUsability, VersionFlag) {
  Result r = Shell(kTidal + " --version");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, std::string("tidal ") + tidal::kVersion + "\n");
}

// Completes `words` (the last one being typed) with the generated script; one reply per line.
std::string Complete(const std::string& script, const std::string& words) {
  const std::string cmd = "bash -c 'source " + script + "; COMP_WORDS=(" + words +
                          "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _tidal; printf \"%s\\n\" \"${COMPREPLY[@]}\"'";
  return Shell(cmd).out;
}

TEST(CliUsability, BashCompletionCompletesCommandsOptionsAndRecipeKeys) {
  const std::string script = tidal::envs::testing::PluginBuildDir() + "/tidal.bash";
  Result r = Shell(kTidal + " completion bash > " + script);
  ASSERT_EQ(r.rc, 0) << r.out;
  r = Shell("bash -n " + script);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(Complete(script, "tidal gen"), "generate\n");
  EXPECT_EQ(Complete(script, "tidal model ins"), "inspect\n");
  EXPECT_NE(Complete(script, "tidal generate --temp").find("--temperature"), std::string::npos);
  EXPECT_EQ(Complete(script, "tidal run recipes/quickstart.yaml train.l"), "train.lr=\n");
  const std::string env_keys = Complete(script, "tidal validate r.yaml env.");
  EXPECT_NE(env_keys.find("env.plugin="), std::string::npos) << env_keys;
  EXPECT_NE(env_keys.find("env.args="), std::string::npos) << env_keys;
  EXPECT_NE(Shell(kTidal + " completion zsh").rc, 0);
}

TEST(CliUsability, EnvCheckVerifiesThatASeedGivesTheSameTask) {
  Result ok = Shell(kTidal + " env check builtin:letter_count --tasks 2");
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_NE(ok.out.find("each seed gave the same task"), std::string::npos) << ok.out;

  // A Python environment whose task depends on the process (salted str hashes): caught.
  const std::string dir = tidal::envs::testing::PluginBuildDir();
  std::ofstream(dir + "/salted.py") << R"PY(
def reset(seed, split, args):
    word = "abc%d" % seed
    return {"prompt": "p", "hidden": hash(word) % 1000}
def score(hidden, response, args):
    return 0.0
)PY";
  Result bad = Shell(kTidal + " env check python:" + dir + "/salted.py");
  EXPECT_NE(bad.rc, 0) << bad.out;
  EXPECT_NE(bad.out.find("is not deterministic"), std::string::npos) << bad.out;

  Result py = Shell(kTidal + " env check python:" + std::string(TIDAL_SOURCE_DIR) +
                    "/envs/examples/python_reward/letter_count.py --args '{\"max_len\": 5}'");
  EXPECT_EQ(py.rc, 0) << py.out;
  EXPECT_NE(py.out.find("score(reference) = 1"), std::string::npos) << py.out;
}

}  // namespace
