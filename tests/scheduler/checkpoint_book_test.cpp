#include "scheduler/checkpoint_book.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "core/remove_tree.h"

namespace tidal::scheduler {
namespace {

// Not std::filesystem in tests: the torch wheel's libtorch.so exports crashing copies of it.
class CheckpointBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tidal_ckpt_book_test_XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::string Mkdir(const std::string& name) {
    std::string p = dir_ + "/" + name;
    ::mkdir(p.c_str(), 0755);
    return p;
  }
  bool Exists(const std::string& name) const { return ::access((dir_ + "/" + name).c_str(), F_OK) == 0; }
  std::string dir_;
};

TEST_F(CheckpointBookTest, ResumesFromTheNewestCompleteCheckpoint) {
  EXPECT_FALSE(FindResumePoint(dir_)->has_value());
  WriteControllerState(dir_ + "/step-2", 2, 2, 40);
  WriteControllerState(dir_ + "/step-10", 10, 10, 200);
  Mkdir("step-12");  // the trainer wrote it, the controller state never came
  auto r = FindResumePoint(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->step, 10);
  EXPECT_EQ((*r)->dir, dir_ + "/step-10");
}

TEST_F(CheckpointBookTest, BrokenStateIsAnError) {
  std::ofstream(Mkdir("step-3") + "/controller_state.json") << "{not json";
  auto r = FindResumePoint(dir_);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("controller_state.json: not JSON"), std::string::npos);
}

TEST_F(CheckpointBookTest, PruneKeepsTheNewest) {
  for (const char* s : {"step-1", "step-2", "step-3", "step-10"}) Mkdir(s);
  PruneCheckpoints(dir_, 2);
  EXPECT_FALSE(Exists("step-1"));
  EXPECT_FALSE(Exists("step-2"));
  EXPECT_TRUE(Exists("step-3"));
  EXPECT_TRUE(Exists("step-10"));  // numeric order, not lexical
}

}  // namespace
}  // namespace tidal::scheduler
