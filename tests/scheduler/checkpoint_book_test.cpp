#include "scheduler/checkpoint_book.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace tidal::scheduler {
namespace {

namespace fs = std::filesystem;

class CheckpointBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tidal_ckpt_book_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CheckpointBookTest, ResumesFromTheNewestCompleteCheckpoint) {
  EXPECT_FALSE(FindResumePoint(dir_.string())->has_value());
  WriteControllerState((dir_ / "step-2").string(), 2, 2, 40);
  WriteControllerState((dir_ / "step-10").string(), 10, 10, 200);
  fs::create_directories(dir_ / "step-12");  // trainer wrote it, the controller state never came
  auto r = FindResumePoint(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->step, 10);
  EXPECT_EQ(fs::path((*r)->dir).filename(), "step-10");
}

TEST_F(CheckpointBookTest, BrokenStateIsAnError) {
  fs::create_directories(dir_ / "step-3");
  std::ofstream(dir_ / "step-3" / "controller_state.json") << "{not json";
  auto r = FindResumePoint(dir_.string());
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("controller_state.json: not JSON"), std::string::npos);
}

TEST_F(CheckpointBookTest, PruneKeepsTheNewest) {
  for (int s : {1, 2, 3, 10}) fs::create_directories(dir_ / ("step-" + std::to_string(s)));
  PruneCheckpoints(dir_.string(), 2);
  EXPECT_FALSE(fs::exists(dir_ / "step-1"));
  EXPECT_FALSE(fs::exists(dir_ / "step-2"));
  EXPECT_TRUE(fs::exists(dir_ / "step-3"));
  EXPECT_TRUE(fs::exists(dir_ / "step-10"));  // numeric order, not lexical
}

}  // namespace
}  // namespace tidal::scheduler
