// End to end through the real `tidal` binary (TIDAL_BIN): exit codes and what users see for
// validate, recipe explain and help.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace {

using ::testing::HasSubstr;

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `tidal ARGS` from the source dir (so recipes/examples/... paths resolve as a user types
// them) with stdout and stderr captured separately.
Result Tidal(const std::string& args) {
  char tmpl[] = "/tmp/tidal_cli_test_XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string cmd = absl::StrCat("cd '", TIDAL_SOURCE_DIR, "' && '", TIDAL_BIN, "' ", args, " >'", dir, "/out' 2>'", dir,
                                 "/err'");
  int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = Slurp(dir + "/out");
  r.err = Slurp(dir + "/err");
  std::remove((dir + "/out").c_str());
  std::remove((dir + "/err").c_str());
  ::rmdir(dir.c_str());
  return r;
}

TEST(CliTest, ValidateAcceptsAGoodRecipe) {
  Result r = Tidal("validate recipes/examples/letter_count_dapo.yaml");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "ok: letter-count-dapo\n");
  EXPECT_EQ(r.err, "");
}

TEST(CliTest, ValidateMisspelledKeyPrintsPositionAndSuggestionAndExits2) {
  Result r = Tidal("validate recipes/examples/misspelled.yaml");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("recipes/examples/misspelled.yaml:8:3: `train.lrr`: unknown key; did you mean "
                               "`train.lr`?\n"));
  EXPECT_THAT(r.err, HasSubstr("tidal: recipes/examples/misspelled.yaml: invalid recipe (1 error)"));
}

TEST(CliTest, ValidateReportsEveryError) {
  Result r = Tidal("validate recipes/examples/many_errors.yaml");
  EXPECT_EQ(r.code, 2);
  for (const char* expected :
       {"many_errors.yaml:4:9: `model.arch`: `qwen4` is not one of qwen2, qwen3, llama; did you mean `qwen2`?",
        "`model.size.heads`: heads (3) must divide hidden (100)", "`pool.tags`: rollout (1) + train (1) = 2 devices",
        "`rollout.temperature`: must be > 0, got 0", "`rollout.top_p`: must be in (0, 1], got 1.5",
        "`algo.clip`: expected a list of 2 numbers, got a list of 1", "`train.lr`: expected a number, got `fast`",
        "`train.steps`: required key is missing", "`env.plugin`: required key is missing",
        "invalid recipe (10 errors)"}) {
    EXPECT_THAT(r.err, HasSubstr(expected));
  }
}

TEST(CliTest, ValidateAppliesAndChecksOverrides) {
  Result ok = Tidal("validate recipes/examples/letter_count_dapo.yaml train.lr=3e-4 'algo.clip=[0.1, 0.3]' --print");
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("lr: 0.0003\n"));
  EXPECT_THAT(ok.out, HasSubstr("clip: [0.1, 0.3]\n"));
  EXPECT_THAT(ok.out, HasSubstr("ok: letter-count-dapo\n"));

  Result bad = Tidal("validate recipes/examples/letter_count_dapo.yaml train.lrr=3e-4 pool.policy=elastik");
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.err, HasSubstr("<override>: `train.lrr`: unknown key; did you mean `train.lr`?"));
  EXPECT_THAT(bad.err, HasSubstr("<override>: `pool.policy`: `elastik` is not one of static, colocated, elastic; "
                                 "did you mean `elastic`?"));
}

TEST(CliTest, ValidateMissingFileIsAUserError) {
  Result r = Tidal("validate recipes/examples/does_not_exist.yaml");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("does_not_exist.yaml: no such recipe file"));
}

TEST(CliTest, ValidateWithoutArgumentsIsAUserError) {
  Result r = Tidal("validate");
  EXPECT_EQ(r.code, 2);
}

TEST(CliTest, RecipeExplainListsKeys) {
  Result r = Tidal("recipe explain");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("train.lr "));
  EXPECT_THAT(r.out, HasSubstr("algo.is_correction.type "));
  EXPECT_THAT(r.out, HasSubstr("grpo|dapo|gspo|cispo|rloo|reinforce_pp"));

  Result md = Tidal("recipe explain --format markdown");
  EXPECT_EQ(md.code, 0) << md.err;
  EXPECT_EQ(md.out, Slurp(std::string(TIDAL_SOURCE_DIR) + "/docs/recipes.md"));

  Result bad = Tidal("recipe explain --format html");
  EXPECT_EQ(bad.code, 2);
}

TEST(CliTest, HelpForEachRecipeCommand) {
  for (const char* args : {"validate --help", "recipe explain --help", "--help"}) {
    Result r = Tidal(args);
    EXPECT_EQ(r.code, 0) << args << ": " << r.err;
    EXPECT_FALSE(r.out.empty()) << args;
  }
}

}  // namespace
