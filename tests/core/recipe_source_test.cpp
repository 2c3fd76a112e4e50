// The untyped stage: located trees, deep merge, overrides, issue ordering.
#include "core/recipe_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tidal {
namespace {

using ::testing::HasSubstr;

SourceNode Parse(const std::string& text, std::vector<RecipeIssue>* issues, const std::string& name = "t.yaml") {
  std::vector<std::string> included;
  return ParseRecipeSource(text, name, "", issues, &included);
}

TEST(RecipeSourceTest, NodesRememberOneBasedPositions) {
  std::vector<RecipeIssue> issues;
  SourceNode root = Parse("a: 1\nb:\n  c: [1, 2]\n  d:\n", &issues);
  ASSERT_TRUE(issues.empty());
  const SourceNode* b = root.Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->key_loc.ToString(), "t.yaml:2:1");
  const SourceNode* c = b->Find("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->key_loc.ToString(), "t.yaml:3:3");
  EXPECT_EQ(c->loc.ToString(), "t.yaml:3:6");
  // An empty value points at its key, not at the next line.
  const SourceNode* d = b->Find("d");
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->IsNull());
  EXPECT_EQ(d->loc.ToString(), "t.yaml:4:3");
}

TEST(RecipeSourceTest, MergeIsDeepForMapsAndReplacesEverythingElse) {
  std::vector<RecipeIssue> issues;
  SourceNode base = Parse("m: {x: 1, y: {p: 1, q: 2}}\nl: [1, 2, 3]\nkeep: {a: 1}\n", &issues, "base.yaml");
  SourceNode over = Parse("m: {y: {q: 5}, z: 3}\nl: [9]\nkeep:\n", &issues, "over.yaml");
  MergeSource(&base, std::move(over));
  ASSERT_TRUE(issues.empty());
  const SourceNode* m = base.Find("m");
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->children.size(), 3u);
  EXPECT_EQ(m->Find("x")->yaml().Scalar(), "1");
  EXPECT_EQ(m->Find("y")->Find("p")->yaml().Scalar(), "1");
  EXPECT_EQ(m->Find("y")->Find("q")->yaml().Scalar(), "5");
  EXPECT_EQ(m->Find("y")->Find("q")->loc.file, "over.yaml");
  EXPECT_EQ(m->Find("z")->yaml().Scalar(), "3");
  EXPECT_EQ(base.Find("l")->yaml().size(), 1u);  // lists replace, not append
  EXPECT_EQ(base.Find("keep")->Find("a")->yaml().Scalar(), "1");  // null over a map: no-op
}

TEST(RecipeSourceTest, MergingDoesNotCorruptTheParsedDocuments) {
  // yaml-cpp's Node::operator= writes through to shared nodes; SourceNode must not use it.
  std::vector<RecipeIssue> issues;
  SourceNode base = Parse("a: 1\nb: 2\nc: 3\n", &issues);
  SourceNode over = Parse("b: 20\n", &issues);
  MergeSource(&base, std::move(over));
  EXPECT_EQ(base.Find("a")->yaml().Scalar(), "1");
  EXPECT_EQ(base.Find("b")->yaml().Scalar(), "20");
  EXPECT_EQ(base.Find("c")->yaml().Scalar(), "3");
}

TEST(RecipeSourceTest, DuplicateKeysAreReported) {
  std::vector<RecipeIssue> issues;
  SourceNode root = Parse("x:\n  a: 1\n  a: 2\n", &issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].ToString(), "t.yaml:3:3: `x.a`: duplicate key (first written at line 2)");
  EXPECT_EQ(root.Find("x")->Find("a")->yaml().Scalar(), "2");
}

TEST(RecipeSourceTest, ARecipeMustBeAMap) {
  std::vector<RecipeIssue> issues;
  Parse("- a\n- b\n", &issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_THAT(issues[0].ToString(), HasSubstr("t.yaml:1:1: a recipe must be a map of keys"));
}

TEST(RecipeSourceTest, OverridesBuildNestedMapsAndParseYaml) {
  std::vector<RecipeIssue> issues;
  SourceNode root = Parse("train: {lr: 1, steps: 2}\n", &issues);
  ApplyOverride("train.lr=0.5", &root, &issues);
  ApplyOverride("env.args={k: [1, 2]}", &root, &issues);
  ApplyOverride("a.b.c=x=y", &root, &issues);  // the first '=' splits
  ASSERT_TRUE(issues.empty());
  EXPECT_EQ(root.Find("train")->Find("lr")->yaml().Scalar(), "0.5");
  EXPECT_EQ(root.Find("train")->Find("lr")->loc.ToString(), "<override>");
  EXPECT_EQ(root.Find("train")->Find("steps")->yaml().Scalar(), "2");
  const SourceNode* args = root.Find("env")->Find("args");
  ASSERT_NE(args, nullptr);
  ASSERT_NE(args->Find("k"), nullptr);
  EXPECT_EQ(args->Find("k")->yaml().size(), 2u);
  EXPECT_EQ(root.Find("a")->Find("b")->Find("c")->yaml().Scalar(), "x=y");
}

TEST(RecipeSourceTest, MalformedOverridesAreIssues) {
  std::vector<RecipeIssue> issues;
  SourceNode root = Parse("a: 1\n", &issues);
  ApplyOverride("novalue", &root, &issues);
  ApplyOverride("a..b=1", &root, &issues);
  ApplyOverride("include=x.yaml", &root, &issues);
  ApplyOverride("a=[1, 2", &root, &issues);
  ASSERT_EQ(issues.size(), 4u);
  EXPECT_EQ(issues[0].ToString(), "<override>: `novalue` is not of the form key.path=value");
  EXPECT_THAT(issues[1].ToString(), HasSubstr("empty key name"));
  EXPECT_THAT(issues[2].ToString(), HasSubstr("cannot be set from the command line"));
  EXPECT_THAT(issues[3].ToString(), HasSubstr("<override>: `a`: value `[1, 2` is not valid YAML"));
}

TEST(RecipeSourceTest, IssuesAreOrderedTopFileFirstThenByPosition) {
  std::vector<RecipeIssue> issues = {
      {{"base.yaml", 3, 1}, "x", "b3"},
      {{"<override>", 0, 0}, "y", "o"},
      {{"top.yaml", 0, 0}, "z", "t-missing"},
      {{"top.yaml", 7, 2}, "w", "t7"},
      {{"top.yaml", 2, 5}, "v", "t2"},
      {{"top.yaml", 2, 5}, "v", "t2"},  // duplicates collapse
  };
  absl::Status s = IssuesToStatus(issues, "top.yaml");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "top.yaml:2:5: `v`: t2\n"
            "top.yaml:7:2: `w`: t7\n"
            "top.yaml: `z`: t-missing\n"
            "base.yaml:3:1: `x`: b3\n"
            "<override>: `y`: o");
  EXPECT_TRUE(IssuesToStatus({}, "top.yaml").ok());
}

}  // namespace
}  // namespace tidal
