// The fixture of the `tidal run` end-to-end tests (tests/tools/run_*_test.cpp): a fresh
// directory per test, <build>/<suite>/<test name>, with the suite's recipe written into it, and
// the prompt-ledger check that every such test makes on summary.json.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace tidal::testing {

class RunFixture : public ::testing::Test {
 protected:
  RunFixture(std::string suite, std::string recipe_text, std::string recipe_name = "tiny.yaml")
      : suite_(std::move(suite)), recipe_text_(std::move(recipe_text)), recipe_name_(std::move(recipe_name)) {}

  void SetUp() override {
    root_ = std::filesystem::path(TIDAL_BINARY_DIR) / suite_ /
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(root_);
    recipe_ = root_ / recipe_name_;
    std::ofstream(recipe_) << recipe_text_;
  }

  // Every created prompt was trained on or dropped with a reason; with `trained` >= 0, exactly
  // that many were trained.
  static void ExpectNoneUnaccounted(const nlohmann::json& s, int64_t trained = -1) {
    ASSERT_TRUE(s.is_object()) << "no summary.json";
    const nlohmann::json& p = s["prompts"];
    EXPECT_EQ(p["unaccounted"], 0) << s.dump(2);
    if (trained >= 0) EXPECT_EQ(p["trained"], trained) << s.dump(2);
    EXPECT_EQ(p["created"].get<int64_t>(), p["trained"].get<int64_t>() + p["dropped"].get<int64_t>()) << s.dump(2);
  }

  std::filesystem::path root_, recipe_;

 private:
  std::string suite_, recipe_text_, recipe_name_;
};

}  // namespace tidal::testing
