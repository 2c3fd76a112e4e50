// Peer liveness from heartbeats: a peer is dead once nothing has been heard from it for `miss`
// consecutive heartbeat intervals (silence > interval * miss).
//
// Contract: not thread-safe; one owner (a messaging endpoint's I/O thread) calls Seen() for every
// message it receives (any message counts as a sign of life, not only Heartbeat) and Expire() on
// each loop turn. Times are steady_clock so wall-clock jumps cannot kill or revive peers.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <map>
#include "absl/time/time.h"
#include "core/clock.h"

namespace tidal {

class HeartbeatTracker {
 public:
  using Clock = MonoClock;

  HeartbeatTracker(absl::Duration interval, int miss);

  // Records a sign of life. Returns true when the peer was unknown or had been declared dead,
  // i.e. it (re)joined.
  bool Seen(std::string_view peer, Clock::time_point now);
  // Starts tracking `peer` without a message (a worker watching its controller from connect
  // time, so a controller that never answers is still reported).
  void Expect(std::string_view peer, Clock::time_point now);
  // Declares dead, and returns, every live peer silent for longer than the timeout.
  std::vector<std::string> Expire(Clock::time_point now);
  // When the next Expire() can find a dead peer; time_point::max() when none is alive.
  Clock::time_point NextDeadline() const;
  bool Alive(std::string_view peer) const;
  // Stops tracking a peer (it said goodbye).
  void Forget(std::string_view peer);

  struct Entry {
    std::string peer;
    bool alive = false;
    Clock::time_point last_seen;
  };
  std::vector<Entry> Snapshot() const;

  Clock::duration timeout() const { return timeout_; }

 private:
  struct State {
    bool alive = false;
    Clock::time_point last_seen;
  };
  Clock::duration timeout_;
  std::map<std::string, State, std::less<>> peers_;  // sorted: deterministic event order
};

}  // namespace tidal
