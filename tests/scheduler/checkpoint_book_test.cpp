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
  // A complete checkpoint: the controller state and a trainer manifest.
  void Complete(const std::string& name, int64_t step) {
    WriteControllerState(dir_ + "/" + name, step, step, 20 * step);
    std::ofstream(dir_ + "/" + name + "/manifest.json") << R"({"format": "x", "world_size": 1, "files": {}})";
  }
  bool Exists(const std::string& name) const { return ::access((dir_ + "/" + name).c_str(), F_OK) == 0; }
  std::string dir_;
};

TEST_F(CheckpointBookTest, ResumesFromTheNewestCompleteCheckpoint) {
  EXPECT_FALSE(FindResumePoint(dir_)->has_value());
  Complete("step-2", 2);
  Complete("step-10", 10);
  Mkdir("step-12");  // the trainer wrote it, the controller state never came
  auto r = FindResumePoint(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->step, 10);
  EXPECT_EQ((*r)->dir, dir_ + "/step-10");
}

// A damaged or inconsistent newest checkpoint is skipped: the resume falls back to the newest
// valid one (never to a state that claims another step than its directory, like {"step":100000}).
TEST_F(CheckpointBookTest, ResumeFallsBackPastUnusableCheckpoints) {
  Complete("step-4", 4);
  std::ofstream(Mkdir("step-9") + "/controller_state.json") << "{not json";
  Complete("step-7", 7);
  std::ofstream(dir_ + "/step-7/controller_state.json") << R"({"step": 100000, "version": 7, "prompts_created": 1})";
  Complete("step-6", 6);
  std::ofstream(dir_ + "/step-6/controller_state.json") << R"({"step": 6})";  // keys missing
  WriteControllerState(dir_ + "/step-5", 5, 5, 100);                          // no trainer manifest
  auto r = FindResumePoint(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->step, 4);
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
