#include "core/heartbeat.h"

#include <algorithm>

namespace tidal {

HeartbeatTracker::HeartbeatTracker(absl::Duration interval, int miss)
    : timeout_(std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(interval)) *
               std::max(miss, 1)) {}

bool HeartbeatTracker::Seen(std::string_view peer, Clock::time_point now) {
  auto [it, inserted] = peers_.try_emplace(std::string(peer));
  bool joined = inserted || !it->second.alive;
  it->second.alive = true;
  it->second.last_seen = now;
  return joined;
}

void HeartbeatTracker::Expect(std::string_view peer, Clock::time_point now) {
  State& s = peers_.try_emplace(std::string(peer)).first->second;
  s.alive = true;
  s.last_seen = now;
}

std::vector<std::string> HeartbeatTracker::Expire(Clock::time_point now) {
  std::vector<std::string> dead;
  for (auto& [peer, s] : peers_) {
    if (s.alive && now - s.last_seen > timeout_) {
      s.alive = false;
      dead.push_back(peer);
    }
  }
  return dead;
}

HeartbeatTracker::Clock::time_point HeartbeatTracker::NextDeadline() const {
  auto next = Clock::time_point::max();
  for (const auto& [peer, s] : peers_) {
    // +1 tick: Expire() needs silence strictly longer than the timeout.
    if (s.alive) next = std::min(next, s.last_seen + timeout_ + Clock::duration(1));
  }
  return next;
}

bool HeartbeatTracker::Alive(std::string_view peer) const {
  auto it = peers_.find(peer);
  return it != peers_.end() && it->second.alive;
}

void HeartbeatTracker::Forget(std::string_view peer) {
  if (auto it = peers_.find(peer); it != peers_.end()) peers_.erase(it);
}

std::vector<HeartbeatTracker::Entry> HeartbeatTracker::Snapshot() const {
  std::vector<Entry> out;
  out.reserve(peers_.size());
  for (const auto& [peer, s] : peers_) out.push_back(Entry{peer, s.alive, s.last_seen});
  return out;
}

}  // namespace tidal
