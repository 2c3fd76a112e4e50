#include "scheduler/fleet.h"

namespace tidal::scheduler {

int Fleet::DeviceOfPeer(const std::string& peer) const {
  if (peer.empty()) return -1;
  for (size_t d = 0; d < slots_.size(); ++d) {
    if (slots_[d].peer == peer) return static_cast<int>(d);
  }
  return -1;
}

bool Fleet::AllReady() const {
  for (const auto& w : slots_) {
    if (w.state != WorkerSlot::State::kReady) return false;
  }
  return true;
}

int Fleet::RlInFlight() const {
  int n = 0;
  for (const auto& w : slots_) n += static_cast<int>(w.rl.size());
  return n;
}

bool Fleet::AnyTrainRankBusy() const {
  for (const auto& w : slots_) {
    if (w.train_rank >= 0 && w.train_ops > 0) return true;
  }
  return false;
}

int64_t Fleet::Restarts() const {
  int64_t n = 0;
  for (const auto& w : slots_) n += w.restarts;
  return n;
}

ExitPlan Fleet::OnExit(int device, bool stopping, bool finishing) {
  WorkerSlot& w = slots_[device];
  ExitPlan plan;
  w.peer.clear();
  w.train_ops = 0;
  w.agent_calls = 0;  // the agents see their calls fail and retry elsewhere
  if (stopping || finishing) {
    w.state = WorkerSlot::State::kExited;
    plan.dropped_at_run_end.assign(w.rl.begin(), w.rl.end());
    w.rl.clear();
    if (stopping) return plan;
  }
  w.state = WorkerSlot::State::kDead;
  plan.in_flight = static_cast<int64_t>(w.rl.size());
  if (w.train_rank >= 0) {
    plan.action = ExitPlan::Action::kTrainRankLost;
    return plan;
  }
  w.rl.clear();
  plan.eval_requeue.assign(w.eval.begin(), w.eval.end());
  w.eval.clear();
  w.relayed_version = w.applied_version = -1;
  if (w.restarts >= policy_.max_restarts_per_device) {
    plan.action = ExitPlan::Action::kGiveUp;
    return plan;
  }
  ++w.restarts;
  w.state = WorkerSlot::State::kStarting;
  plan.action = ExitPlan::Action::kRestart;
  return plan;
}

}  // namespace tidal::scheduler
