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
  // A complete checkpoint: a trainer manifest, then the controller state listed in it.
  void Complete(const std::string& name, int64_t step, const std::string& run = "run-a") {
    Mkdir(name);
    std::ofstream(dir_ + "/" + name + "/manifest.json") << R"({"format": "x", "world_size": 1, "files": {}})";
    ASSERT_TRUE(WriteControllerState(dir_ + "/" + name, {step, step, 20 * step, run}).ok());
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
  EXPECT_EQ((*r)->run_id, "run-a");
}

// A damaged or inconsistent newest checkpoint is skipped: the resume falls back to the newest
// valid one (never to a state that claims another step than its directory, like {"step":100000}).
TEST_F(CheckpointBookTest, ResumeFallsBackPastUnusableCheckpoints) {
  Complete("step-4", 4);
  std::ofstream(Mkdir("step-9") + "/controller_state.json") << "{not json";
  // Hand-edited states: the manifest's checksum no longer matches.
  Complete("step-7", 7);
  std::ofstream(dir_ + "/step-7/controller_state.json") << R"({"step": 100000, "version": 7, "prompts_created": 1})";
  Complete("step-6", 6);
  std::ofstream(dir_ + "/step-6/controller_state.json") << R"({"step": 6})";
  std::ofstream(Mkdir("step-5") + "/controller_state.json")  // no trainer manifest
      << R"({"step": 5, "version": 5, "prompts_created": 100, "run_id": "run-a"})";
  auto r = FindResumePoint(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->step, 4);
}

// The state is inside the checksummed manifest: valid-looking JSON that the manifest does not
// vouch for is not resumed from, and a state without a trainer manifest is never written.
TEST_F(CheckpointBookTest, TheControllerStateIsCoveredByTheManifest) {
  Complete("step-3", 3);
  std::ifstream in(dir_ + "/step-3/manifest.json");
  const std::string manifest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(manifest.find("controller_state.json"), std::string::npos) << manifest;
  EXPECT_TRUE(FindResumePoint(dir_)->has_value());
  // A manifest that does not list the state (edited, or from before the state was written).
  std::ofstream(dir_ + "/step-3/manifest.json") << R"({"format": "x", "world_size": 1, "files": {}})";
  EXPECT_FALSE(FindResumePoint(dir_)->has_value());
  absl::Status s = WriteControllerState(Mkdir("step-8"), {8, 8, 1, "run-a"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("step-8/manifest.json"), std::string::npos) << s;
}

TEST_F(CheckpointBookTest, PruneKeepsTheNewestOfThisRunOnly) {
  for (int step : {1, 2, 3, 10}) Complete("step-" + std::to_string(step), step, "run-a");
  Complete("step-4", 4, "run-b");  // another run sharing checkpoint.dir
  Mkdir("step-0");                 // incomplete: no controller state
  PruneCheckpoints(dir_, 2, "run-a");
  EXPECT_FALSE(Exists("step-1"));
  EXPECT_FALSE(Exists("step-2"));
  EXPECT_TRUE(Exists("step-3"));
  EXPECT_TRUE(Exists("step-10"));  // numeric order, not lexical
  EXPECT_TRUE(Exists("step-4"));
  EXPECT_TRUE(Exists("step-0"));
}

TEST_F(CheckpointBookTest, AFreshRunRefusesAnotherRunsCheckpointsUnlessOverwriting) {
  EXPECT_TRUE(CheckFreshCheckpointDir(dir_, false).ok());
  Mkdir("step-1.partial");  // not a checkpoint
  EXPECT_TRUE(CheckFreshCheckpointDir(dir_, false).ok());
  Complete("step-2", 2, "run-b");
  absl::Status s = CheckFreshCheckpointDir(dir_, false);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("checkpoint.dir '" + dir_ + "'"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("--resume"), std::string::npos) << s;
  EXPECT_TRUE(Exists("step-2"));
  EXPECT_TRUE(CheckFreshCheckpointDir(dir_, true).ok());
  EXPECT_FALSE(Exists("step-2"));
}

}  // namespace
}  // namespace tidal::scheduler
