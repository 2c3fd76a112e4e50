// The schema table's own consistency (docs, defaults, sections, types), explain output and the
// committed docs/recipes.md, and the typo-suggestion helpers.
#include "core/recipe_schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_split.h"

namespace tidal {
namespace {

using ::testing::HasSubstr;

std::string EmitValue(const RecipeKey& key, const Recipe& r) {
  YAML::Emitter e;
  key.emit(r, e);
  return e.c_str();
}

TEST(RecipeSchemaTest, EveryKeyHasDocTypeAndDefaultMatchingDefaultRecipe) {
  Recipe defaults = DefaultRecipe();
  std::set<std::string> paths;
  for (const RecipeKey& k : RecipeKeys()) {
    SCOPED_TRACE(k.path);
    EXPECT_TRUE(paths.insert(k.path).second) << "duplicate key";
    EXPECT_FALSE(k.doc.empty());
    EXPECT_FALSE(k.type_name.empty());
    if (k.required) {
      EXPECT_TRUE(k.default_text.empty());
    } else {
      EXPECT_EQ(EmitValue(k, defaults), k.default_text);
    }
    if (k.type == RecipeKeyType::kEnum) {
      EXPECT_GE(k.choices.size(), 2u);
    }
  }
  EXPECT_GE(RecipeKeys().size(), 70u);
}

TEST(RecipeSchemaTest, SectionsAreContiguousAndDocumented) {
  std::set<std::string> finished;  // sections already left
  std::string current;
  for (const RecipeKey& k : RecipeKeys()) {
    SCOPED_TRACE(k.path);
    size_t dot = k.path.rfind('.');
    std::string section = dot == std::string::npos ? "" : k.path.substr(0, dot);
    if (section != current) {
      EXPECT_EQ(finished.count(section), 0u) << "keys of section `" << section << "` are not contiguous";
      finished.insert(current);
      current = section;
    }
    // Every enclosing section is documented and is not itself a key.
    for (std::string s = section; !s.empty(); s = s.rfind('.') == std::string::npos ? "" : s.substr(0, s.rfind('.'))) {
      EXPECT_NE(FindRecipeSection(s), nullptr) << "undocumented section " << s;
      EXPECT_EQ(FindRecipeKey(s), nullptr);
    }
  }
}

TEST(RecipeSchemaTest, EveryKeyRejectsAValueOfTheWrongShape) {
  YAML::Node map = YAML::Load("{a: 1}");
  YAML::Node scalar = YAML::Load("just-text");
  for (const RecipeKey& k : RecipeKeys()) {
    SCOPED_TRACE(k.path);
    Recipe r = DefaultRecipe();
    RecipeKeyInput input;
    if (k.type == RecipeKeyType::kMap) {
      input.yaml = scalar;
      input.json = "just-text";
    } else {
      input.yaml = map;
    }
    std::optional<RecipeKeyProblem> problem = k.set(input, r);
    ASSERT_TRUE(problem.has_value());
    EXPECT_THAT(problem->message, HasSubstr("a map"));
    if (k.type != RecipeKeyType::kMap) {
      EXPECT_THAT(problem->message, HasSubstr("got a map"));
    }
  }
}

TEST(RecipeSchemaTest, EveryDefaultReadsBackThroughItsOwnKey) {
  for (const RecipeKey& k : RecipeKeys()) {
    if (k.required || k.type == RecipeKeyType::kMap) continue;
    SCOPED_TRACE(k.path);
    Recipe r;
    RecipeKeyInput input;
    input.yaml = YAML::Load(k.default_text);
    std::optional<RecipeKeyProblem> problem = k.set(input, r);
    ASSERT_FALSE(problem.has_value()) << problem->message;
    EXPECT_EQ(EmitValue(k, r), k.default_text);
  }
}

TEST(RecipeSchemaTest, EnumChoicesAreTheEnumSpellings) {
  const RecipeKey* algo = FindRecipeKey("algo.name");
  ASSERT_NE(algo, nullptr);
  EXPECT_THAT(algo->choices, testing::ElementsAre("grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp"));
  EXPECT_EQ(algo->default_text, "grpo");
  const RecipeKey* policy = FindRecipeKey("pool.policy");
  ASSERT_NE(policy, nullptr);
  EXPECT_EQ(policy->default_text, "elastic");
}

TEST(RecipeSchemaTest, ConstraintTexts) {
  EXPECT_EQ(FindRecipeKey("rollout.top_p")->constraint_text, "in (0, 1]");
  EXPECT_EQ(FindRecipeKey("metrics.port")->constraint_text, "in [-1, 65535]");
  EXPECT_EQ(FindRecipeKey("train.steps")->constraint_text, "> 0");
  EXPECT_TRUE(FindRecipeKey("train.steps")->required);
  EXPECT_EQ(FindRecipeKey("algo.clip")->type_name, "[float, float]");
  EXPECT_EQ(FindRecipeKey("env.args")->type_name, "map");
  EXPECT_EQ(FindRecipeKey("train.nope"), nullptr);
}

TEST(RecipeSchemaTest, IntegerKeysTakeIntegralFloatsButNotFractions) {
  const RecipeKey* steps = FindRecipeKey("train.steps");
  Recipe r;
  RecipeKeyInput in;
  in.yaml = YAML::Load("1e3");
  EXPECT_FALSE(steps->set(in, r).has_value());
  EXPECT_EQ(r.train.steps, 1000);
  in.yaml = YAML::Load("2.5");
  std::optional<RecipeKeyProblem> p = steps->set(in, r);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->message, "expected an integer, got `2.5`");
}

TEST(RecipeSchemaTest, QuotedNumbersAreNotNumbers) {
  Recipe r;
  RecipeKeyInput in;
  in.yaml = YAML::Load("\"0.1\"");
  std::optional<RecipeKeyProblem> p = FindRecipeKey("train.lr")->set(in, r);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->message, "expected a number, got `0.1`");
}

TEST(RecipeSchemaTest, ExplainTextListsEveryKey) {
  std::string text = ExplainRecipeSchema(ExplainFormat::kText);
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (const RecipeKey& k : RecipeKeys()) {
    bool found = false;
    for (const std::string& line : lines) {
      if (line.rfind(k.path + " ", 0) == 0) {
        found = true;
        EXPECT_THAT(line, HasSubstr(k.doc)) << k.path;
        EXPECT_THAT(line, HasSubstr(k.required ? "(required)" : k.default_text)) << k.path;
      }
    }
    EXPECT_TRUE(found) << k.path;
  }
  EXPECT_THAT(text, HasSubstr("include "));
  EXPECT_THAT(text, HasSubstr("Cross-field rules"));
}

TEST(RecipeSchemaTest, ExplainMarkdownHasARowPerKey) {
  std::string md = ExplainRecipeSchema(ExplainFormat::kMarkdown);
  for (const RecipeKey& k : RecipeKeys()) EXPECT_THAT(md, HasSubstr(absl::StrCat("| `", k.path, "` |"))) << k.path;
  for (const RecipeSection& s : RecipeSections()) EXPECT_THAT(md, HasSubstr(absl::StrCat("## `", s.path, "`")));
}

// docs/recipes.md is the markdown explain output; regenerate it with
//   tidal recipe explain --format markdown > docs/recipes.md
TEST(RecipeSchemaTest, CommittedDocsMatchTheSchema) {
  std::ifstream in(std::string(TIDAL_SOURCE_DIR) + "/docs/recipes.md");
  ASSERT_TRUE(in.good()) << "docs/recipes.md is missing";
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), ExplainRecipeSchema(ExplainFormat::kMarkdown))
      << "docs/recipes.md is stale: run `tidal recipe explain --format markdown > docs/recipes.md`";
}

TEST(RecipeSchemaTest, EditDistanceAndClosestMatch) {
  EXPECT_EQ(EditDistance("lr", "lr"), 0u);
  EXPECT_EQ(EditDistance("lrr", "lr"), 1u);
  EXPECT_EQ(EditDistance("trian", "train"), 1u);  // adjacent swap
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  std::vector<std::string> keys = {"lr", "steps", "precision", "prompts_per_step"};
  EXPECT_EQ(ClosestMatch("lrr", keys), "lr");
  EXPECT_EQ(ClosestMatch("step", keys), "steps");
  EXPECT_EQ(ClosestMatch("precison", keys), "precision");
  EXPECT_EQ(ClosestMatch("prompt_per_step", keys), "prompts_per_step");
  EXPECT_EQ(ClosestMatch("banana", keys), "");
  EXPECT_EQ(ClosestMatch("x", keys), "");
}

TEST(RecipeSchemaTest, FloatsPrintShortAndExact) {
  EXPECT_EQ(FormatRecipeFloat(1e-4), "0.0001");
  EXPECT_EQ(FormatRecipeFloat(0.28), "0.28");
  EXPECT_EQ(FormatRecipeFloat(10000), "10000");
  for (double v : {3.3e-5, 0.1 + 0.2, 1e-30, 123456789.125}) {
    EXPECT_EQ(std::stod(FormatRecipeFloat(v)), v);
  }
}

}  // namespace
}  // namespace tidal
