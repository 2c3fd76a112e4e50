// <tidal/env_json.h>: the header-only JSON helpers for C plugins, against nlohmann::json, and
// compiled as strict C99 the way plugin authors use it.
#include "tidal/env_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/envs/plugin_build.h"

namespace {

TEST(EnvJson, FindsTopLevelMembersOnly) {
  const char* j = R"({"nested": {"max_len": 1, "s": "}\"{"}, "list": [1, {"max_len": 2}], "max_len": 12,
                      "scale": -2.5e1, "exact": true, "off": false, "none": null})";
  EXPECT_EQ(tidal_json_int(j, "max_len", 0), 12);
  EXPECT_DOUBLE_EQ(tidal_json_number(j, "scale", 0), -25.0);
  EXPECT_EQ(tidal_json_bool(j, "exact", 0), 1);
  EXPECT_EQ(tidal_json_bool(j, "off", 1), 0);
  EXPECT_EQ(tidal_json_bool(j, "none", 7), 7);
  EXPECT_EQ(tidal_json_int(j, "missing", 42), 42);
  EXPECT_EQ(tidal_json_int(j, "nested", 5), 5);  // not a number: the default
  const char* nested = tidal_json_find(j, "nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(tidal_json_int(nested, "max_len", 0), 1);
  EXPECT_EQ(std::string(nested, tidal_json_skip(nested)), R"({"max_len": 1, "s": "}\"{"})");
  EXPECT_EQ(tidal_json_find("[1, 2]", "a"), nullptr);
  EXPECT_EQ(tidal_json_find(R"({"a": )", "b"), nullptr);  // truncated: no read past the end
  EXPECT_EQ(tidal_json_find("{}", "a"), nullptr);
}

TEST(EnvJson, StringsRoundTripThroughEscapes) {
  const std::string original = "line \"one\"\n\ttab \\ é ✓ 😀 \x01";
  const std::string doc = nlohmann::json{{"word", original}, {"n", 1}}.dump(-1, ' ', /*ensure_ascii=*/true);
  char out[128];
  ASSERT_EQ(tidal_json_string(doc.c_str(), "word", out, sizeof out), static_cast<int>(original.size())) << doc;
  EXPECT_EQ(std::string(out), original);
  char quoted[128];
  const int n = tidal_json_quote(original.c_str(), quoted, sizeof quoted);
  ASSERT_GT(n, 0);
  EXPECT_EQ(nlohmann::json::parse(quoted).get<std::string>(), original);
  // Too small: -1 and still a terminated string.
  char tiny[4];
  EXPECT_EQ(tidal_json_string(doc.c_str(), "word", tiny, sizeof tiny), -1);
  EXPECT_LT(std::string(tiny).size(), sizeof tiny);
  EXPECT_EQ(tidal_json_quote(original.c_str(), tiny, sizeof tiny), -1);
  EXPECT_EQ(tidal_json_string(doc.c_str(), "n", out, sizeof out), -1);  // not a string
}

TEST(EnvJson, CompilesAsStrictC99) {
  int rc = 0;
  const std::string cmd = std::string("printf '#include <tidal/env_json.h>\\nint main(void) { char b[8]; return tidal_json_quote(\"x\", b, 8) != 3; }\\n' | cc -std=c99 -Wall -Wextra -Werror -pedantic -I") +
                          TIDAL_SOURCE_DIR + "/envs/include -x c - -o " + tidal::envs::testing::PluginBuildDir() + "/env_json_c && " +
                          tidal::envs::testing::PluginBuildDir() + "/env_json_c";
  const std::string out = tidal::envs::testing::RunCommand(cmd, &rc);
  EXPECT_EQ(rc, 0) << out;
}

}  // namespace
