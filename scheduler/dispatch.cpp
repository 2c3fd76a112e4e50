#include "scheduler/dispatch.h"

#include <algorithm>

#include "core/hash.h"

namespace tidal::scheduler {

int Credit(int64_t max_seqs, int64_t group_size) {
  return std::max<int>(1, static_cast<int>(max_seqs / std::max<int64_t>(1, group_size)));
}

int RlRoom(const RoomInputs& in) {
  if (!in.rl_running || in.steps_done >= in.steps || in.sessions_only) return 0;
  const int64_t p = in.prompts_per_step;
  int64_t cap = std::min<int64_t>((in.max_staleness + 1) * p, (in.steps - in.steps_done) * p);
  return static_cast<int>(std::max<int64_t>(0, cap - in.outstanding));
}

std::vector<int> DispatchOrder(const DevicePool& pool) {
  std::vector<int> order;
  for (int pass = 0; pass < 2; ++pass) {
    for (int d = 0; d < pool.size(); ++d) {
      if ((pool.device(d).home == Tag::kRollout) == (pass == 0)) order.push_back(d);
    }
  }
  return order;
}

bool CanTakeWork(const WorkerSlot& w, Tag tag, int64_t min_version, int credit) {
  return w.engine_ready() && tag == Tag::kRollout && w.relayed_version >= min_version &&
         w.rollout_load() < credit;
}

uint64_t TaskSeed(int64_t run_seed, uint64_t stream, int64_t index) {
  return SplitMix64(SplitMix64(static_cast<uint64_t>(run_seed) * 0x100000001B3ull + stream) +
                    static_cast<uint64_t>(index));
}

}  // namespace tidal::scheduler
