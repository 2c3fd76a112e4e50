#include "core/heartbeat.h"

#include <gtest/gtest.h>

namespace tidal {
namespace {

using std::chrono::milliseconds;

TEST(HeartbeatTrackerTest, DeclaresDeadOnlyAfterMissIntervalsOfSilence) {
  HeartbeatTracker t(absl::Milliseconds(100), 3);
  HeartbeatTracker::Clock::time_point t0{};
  EXPECT_TRUE(t.Seen("w0", t0));
  EXPECT_FALSE(t.Seen("w0", t0 + milliseconds(100)));  // already alive: not a (re)join
  EXPECT_TRUE(t.Expire(t0 + milliseconds(400)).empty());  // exactly 3 intervals: still alive
  EXPECT_EQ(t.NextDeadline(), t0 + milliseconds(400) + HeartbeatTracker::Clock::duration(1));
  auto dead = t.Expire(t0 + milliseconds(401));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0], "w0");
  EXPECT_FALSE(t.Alive("w0"));
  EXPECT_TRUE(t.Expire(t0 + milliseconds(900)).empty());  // reported once
  EXPECT_EQ(t.NextDeadline(), HeartbeatTracker::Clock::time_point::max());
  EXPECT_TRUE(t.Seen("w0", t0 + milliseconds(1000)));  // revived
  EXPECT_TRUE(t.Alive("w0"));
}

TEST(HeartbeatTrackerTest, TracksPeersIndependently) {
  HeartbeatTracker t(absl::Milliseconds(10), 2);
  HeartbeatTracker::Clock::time_point t0{};
  t.Seen("b", t0);
  t.Seen("a", t0);
  t.Expect("router", t0 + milliseconds(5));
  t.Seen("a", t0 + milliseconds(15));
  auto dead = t.Expire(t0 + milliseconds(21));
  EXPECT_EQ(dead, std::vector<std::string>{"b"});
  dead = t.Expire(t0 + milliseconds(26));
  EXPECT_EQ(dead, std::vector<std::string>{"router"});
  auto snap = t.Snapshot();
  ASSERT_EQ(snap.size(), 3u);
  EXPECT_EQ(snap[0].peer, "a");
  EXPECT_TRUE(snap[0].alive);
  t.Forget("a");
  EXPECT_EQ(t.Snapshot().size(), 2u);
}

}  // namespace
}  // namespace tidal
