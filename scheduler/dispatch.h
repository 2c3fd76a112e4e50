// Dispatch and credits: which device may take rollout work now, and how much RL work the run
// may have outstanding. Pure decisions over the fleet and the pool; the controller sends.
//
// Contract:
// - Called on the controller's event-loop thread; no state of its own.
// - Credit: a device holds at most Credit() groups (RL + eval) at once, enough to keep its
//   engine's max_seqs sequences busy.
// - Room (the staleness gate): rollout may run ahead of training by max_staleness versions, so
//   at most (max_staleness + 1) batches exist at once (stored, in flight or being trained), and
//   never more than the remaining steps need.
#pragma once

#include <cstdint>
#include <vector>

#include "scheduler/device_pool.h"
#include "scheduler/fleet.h"

namespace tidal::scheduler {

int Credit(int64_t max_seqs, int64_t group_size);

struct RoomInputs {
  bool rl_running = false;     // RL has started and is not winding down
  bool sessions_only = false;  // the agents supply the trajectories: no environment prompts
  int64_t prompts_per_step = 1;
  int64_t max_staleness = 0;
  int64_t steps = 0, steps_done = 0;
  int64_t outstanding = 0;     // RL groups stored, in flight or being trained
};
int RlRoom(const RoomInputs& in);

// One group per device per round, home-rollout devices first: a lent train device is recalled
// (its groups pause) as soon as a batch is ready, so it must not take work the rollout devices
// would otherwise have run without interruption. Recomputed when the elastic train group resizes.
std::vector<int> DispatchOrder(const DevicePool& pool);

// Whether `w` (currently tagged `tag`) may take one more group that needs policy `min_version`.
bool CanTakeWork(const WorkerSlot& w, Tag tag, int64_t min_version, int credit);

// Distinct seed streams (1 + resume step: RL prompts; 2: SFT examples) from one run seed.
uint64_t TaskSeed(int64_t run_seed, uint64_t stream, int64_t index);

}  // namespace tidal::scheduler
