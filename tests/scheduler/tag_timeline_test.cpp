#include "scheduler/tag_timeline.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tidal::scheduler {
namespace {

TEST(TagTimelineTest, LineFormat) {
  TagMoveRecord m;
  m.t = 12.5034;
  m.step = 41;
  m.device = 1;
  m.name = "cpu:1";
  m.from = Tag::kRollout;
  m.to = Tag::kTrain;
  m.reason = "train_bound";
  m.train_group = {0, 1};
  EXPECT_EQ(TagMoveJson(m),
            R"({"t":12.503,"step":41,"device":1,"name":"cpu:1","from":"rollout","to":"train",)"
            R"("reason":"train_bound","train_group":[0,1]})");
  m.train_group.clear();
  m.reason = "le\"nd";  // never produced; still valid JSON
  auto j = nlohmann::json::parse(TagMoveJson(m));
  EXPECT_FALSE(j.contains("train_group"));
  EXPECT_EQ(j["reason"], "le_nd");
  EXPECT_TRUE(KnownMoveReason("long_tail"));
  EXPECT_FALSE(KnownMoveReason("le_nd"));
}

TEST(TagTimelineTest, WritesEveryMoveAndCounts) {
  const std::string path = "/tmp/tag_timeline_test_" + std::to_string(getpid()) + ".jsonl";
  {
    TagTimeline tl;
    ASSERT_TRUE(tl.Open(path));
    tl.Record({1.0, 0, 1, "cpu:1", Tag::kTrain, Tag::kRollout, "lend", {}});
    tl.Record({2.0, 1, 1, "cpu:1", Tag::kRollout, Tag::kTrain, "recall", {}});
    tl.Record({3.0, 1, 1, "cpu:1", Tag::kTrain, Tag::kRollout, "lend", {}});
    EXPECT_EQ(tl.total(), 3);
    EXPECT_EQ((tl.counts().at({"train", "rollout", "lend"})), 2);
    EXPECT_EQ((tl.counts().at({"rollout", "train", "recall"})), 1);
    // Flushed per move: readable while the run goes on.
    std::ifstream f(path);
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(f, line);) lines.push_back(nlohmann::json::parse(line));
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[1]["reason"], "recall");
    EXPECT_DOUBLE_EQ(lines[2]["t"].get<double>(), 3.0);
  }
  std::remove(path.c_str());
}

TEST(TagTimelineTest, UnwritablePathStillCounts) {
  TagTimeline tl;
  EXPECT_FALSE(tl.Open("/nonexistent-dir-tidal/tag_timeline.jsonl"));
  tl.Record({1.0, 0, 0, "cpu:0", Tag::kRollout, Tag::kTrain, "gang", {}});
  EXPECT_EQ(tl.total(), 1);
  TagTimeline counts_only;
  EXPECT_TRUE(counts_only.Open(""));
  counts_only.Record({1.0, 0, 0, "cpu:0", Tag::kRollout, Tag::kTrain, "gang", {}});
  EXPECT_EQ(counts_only.total(), 1);
}

}  // namespace
}  // namespace tidal::scheduler
