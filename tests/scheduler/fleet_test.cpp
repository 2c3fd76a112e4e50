#include "scheduler/fleet.h"

#include <gtest/gtest.h>

namespace tidal::scheduler {
namespace {

Fleet ThreeWorkers(SupervisionPolicy policy = {}) {
  Fleet f(policy);
  f.Resize(3);
  f[0].train_rank = 0;
  for (int d = 0; d < 3; ++d) {
    f[d].state = WorkerSlot::State::kReady;
    f[d].peer = "w" + std::to_string(d);
    f[d].hosts_engine = d > 0;
  }
  return f;
}

TEST(FleetTest, FindsDevicesByPeerAndSumsLoad) {
  Fleet f = ThreeWorkers();
  EXPECT_EQ(f.DeviceOfPeer("w2"), 2);
  EXPECT_EQ(f.DeviceOfPeer("nobody"), -1);
  EXPECT_EQ(f.DeviceOfPeer(""), -1);
  EXPECT_TRUE(f.AllReady());
  f[1].rl = {4, 5};
  f[2].rl = {6};
  f[2].eval = {0};
  EXPECT_EQ(f.RlInFlight(), 3);
  EXPECT_EQ(f[2].rollout_load(), 2);
  EXPECT_FALSE(f.AnyTrainRankBusy());
  f[1].train_ops = 1;  // not a train rank: does not count
  EXPECT_FALSE(f.AnyTrainRankBusy());
  f[0].train_ops = 1;
  EXPECT_TRUE(f.AnyTrainRankBusy());
  f[1].state = WorkerSlot::State::kStarting;
  EXPECT_FALSE(f.AllReady());
}

TEST(FleetTest, DeadRolloutWorkerIsRestartedAndForgetsItsWork) {
  Fleet f = ThreeWorkers();
  f[1].rl = {7, 8};
  f[1].eval = {2, 3};
  f[1].relayed_version = f[1].applied_version = 4;
  f[1].agent_calls = 2;
  ExitPlan plan = f.OnExit(1, /*stopping=*/false, /*finishing=*/false);
  EXPECT_EQ(plan.action, ExitPlan::Action::kRestart);
  EXPECT_EQ(plan.in_flight, 2);
  EXPECT_TRUE(plan.dropped_at_run_end.empty());
  EXPECT_EQ(plan.eval_requeue, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f[1].state, WorkerSlot::State::kStarting);
  EXPECT_EQ(f[1].restarts, 1);
  EXPECT_TRUE(f[1].peer.empty());
  EXPECT_TRUE(f[1].rl.empty());
  EXPECT_TRUE(f[1].eval.empty());
  EXPECT_EQ(f[1].agent_calls, 0);
  EXPECT_EQ(f[1].relayed_version, -1);
  EXPECT_EQ(f[1].applied_version, -1);
  EXPECT_EQ(f.Restarts(), 1);
}

TEST(FleetTest, RestartBudgetIsThePolicys) {
  Fleet f = ThreeWorkers({.max_restarts_per_device = 2});
  EXPECT_EQ(f.OnExit(2, false, false).action, ExitPlan::Action::kRestart);
  EXPECT_EQ(f.OnExit(2, false, false).action, ExitPlan::Action::kRestart);
  ExitPlan third = f.OnExit(2, false, false);
  EXPECT_EQ(third.action, ExitPlan::Action::kGiveUp);
  EXPECT_EQ(f[2].restarts, 2);
  EXPECT_EQ(f[2].state, WorkerSlot::State::kDead);
}

TEST(FleetTest, TrainRankDeathIsFatalAndKeepsItsState) {
  Fleet f = ThreeWorkers();
  f[0].train_ops = 2;
  ExitPlan plan = f.OnExit(0, false, false);
  EXPECT_EQ(plan.action, ExitPlan::Action::kTrainRankLost);
  EXPECT_EQ(f[0].state, WorkerSlot::State::kDead);
  EXPECT_EQ(f[0].train_ops, 0);
  EXPECT_EQ(f[0].restarts, 0);
}

TEST(FleetTest, ExitsAtRunEndDropTheirWork) {
  Fleet f = ThreeWorkers();
  f[1].rl = {9};
  ExitPlan stopping = f.OnExit(1, /*stopping=*/true, false);
  EXPECT_EQ(stopping.action, ExitPlan::Action::kNone);
  EXPECT_EQ(stopping.dropped_at_run_end, (std::vector<int64_t>{9}));
  EXPECT_EQ(f[1].state, WorkerSlot::State::kExited);
  EXPECT_EQ(f[1].restarts, 0);

  // While finishing (not yet stopping) a rollout worker still gets restarted, its RL work dropped.
  f[2].rl = {10, 11};
  ExitPlan finishing = f.OnExit(2, false, /*finishing=*/true);
  EXPECT_EQ(finishing.dropped_at_run_end, (std::vector<int64_t>{10, 11}));
  EXPECT_EQ(finishing.in_flight, 0);
  EXPECT_EQ(finishing.action, ExitPlan::Action::kRestart);
}

}  // namespace
}  // namespace tidal::scheduler
