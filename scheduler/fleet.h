// The fleet: the controller's table of worker processes, one slot per device, and the
// supervision policy that decides what happens when one exits.
//
// Contract:
// - Owned and mutated by the controller's event-loop thread only; holds no sockets or pids (the
//   launcher owns the processes, the router the connections). The controller applies the
//   ExitPlan that OnExit returns: it requeues, drops, restarts or fails the run.
// - Supervision: a rollout worker that dies is restarted up to
//   SupervisionPolicy::max_restarts_per_device times (the budget); a train rank's death is fatal
//   (the sharded group cannot continue without it); at run end exits are expected.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace tidal::scheduler {

struct SupervisionPolicy {
  int max_restarts_per_device = 5;  // restarts of one device's worker before the run fails
};

// What the controller knows about one device's worker process.
struct WorkerSlot {
  enum class State { kNone, kStarting, kReady, kDead, kExited };
  State state = State::kNone;
  std::string peer;              // its control-plane identity ("" = not connected)
  int restarts = 0;
  bool hosts_engine = false;
  int train_rank = -1;           // -1: not in the train group
  int64_t relayed_version = -1;  // newest version the worker will serve once it drains its inbox
  int64_t applied_version = -1;  // newest version it confirmed
  std::set<int64_t> rl;          // RL prompts dispatched and not returned (paused ones included)
  std::set<int64_t> eval;        // eval items dispatched and not returned
  int train_ops = 0;             // train-side requests outstanding
  int64_t agent_calls = 0;       // agent endpoint calls waiting or running (rollout work too)
  std::string openai_url;        // the agent endpoint it serves ("" = none)

  bool engine_ready() const { return state == State::kReady && hosts_engine; }
  int rollout_load() const { return static_cast<int>(rl.size() + eval.size()); }
};

// The controller's instruction after a worker exit.
struct ExitPlan {
  enum class Action {
    kNone,           // the run is stopping: nothing more to do
    kTrainRankLost,  // fatal: a train rank died
    kGiveUp,         // fatal: the device used its restart budget
    kRestart,        // spawn it again (the slot is already kStarting, restarts counted)
  };
  Action action = Action::kNone;
  std::vector<int64_t> dropped_at_run_end;  // RL prompts it held while the run was ending
  std::vector<int64_t> eval_requeue;        // eval items it held (put back at the queue front)
  int64_t in_flight = 0;                    // RL prompts it held when it died (for the event)
};

class Fleet {
 public:
  explicit Fleet(SupervisionPolicy policy = {}) : policy_(policy) {}

  void Resize(int devices) { slots_.resize(devices); }
  int size() const { return static_cast<int>(slots_.size()); }
  bool empty() const { return slots_.empty(); }
  WorkerSlot& operator[](int device) { return slots_[device]; }
  const WorkerSlot& operator[](int device) const { return slots_[device]; }
  std::vector<WorkerSlot>::const_iterator begin() const { return slots_.begin(); }
  std::vector<WorkerSlot>::const_iterator end() const { return slots_.end(); }
  const SupervisionPolicy& policy() const { return policy_; }

  int DeviceOfPeer(const std::string& peer) const;  // -1 when unknown
  bool AllReady() const;
  int RlInFlight() const;          // RL prompts dispatched and not returned, whole fleet
  bool AnyTrainRankBusy() const;   // a train rank has train work outstanding
  int64_t Restarts() const;

  // The worker of `device` exited. `stopping`: workers are being shut down; `finishing`: RL is
  // over and in-flight work is being aborted.
  ExitPlan OnExit(int device, bool stopping, bool finishing);

 private:
  SupervisionPolicy policy_;
  std::vector<WorkerSlot> slots_;
};

}  // namespace tidal::scheduler
