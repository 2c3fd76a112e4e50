// Re-partitioning a sharded trainer to a new world size (elastic train group, issue #16).
//
// TrainState is the whole trainer state gathered to full (unsharded) form: the fp32 master
// weights, both AdamW moments and the frozen KL reference as one flat fp32 CPU vector per layer
// group ("<group>.master", ".exp_avg", ".exp_avg_sq", ".reference"), the full weights by HF name
// (to build the new ShardedModel's layout), the optimizer/policy step counters and the learning
// rate. Because every flat is laid out as ShardedModel's padded group vector and padding is
// always zero, a state gathered at world N re-slices exactly at any world M: nothing is
// recomputed, so a grown or shrunk group continues bit-for-bit the same optimizer trajectory
// (only the reduction order of later steps changes, as for any N).
//
// Call order at a step boundary (between optimizer steps, no gradients pending):
//   old group: GatherTrainState (collective over the old communicator; every member gets the
//              state when all_ranks, else rank 0 only);
//   hand-off:  the state reaches the new members (same process: shared; across processes: the
//              old group saves a sharded checkpoint, Trainer::SaveCheckpoint, and every new
//              member reads it whole with TrainStateFromCheckpoint, whatever its world size);
//   new group: every member ScatterTrainState into a ShardedModel created over the new
//              communicator (local, no collective).
// Threads: the caller's driving thread; the state is read-only once gathered.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/communicator.h"
#include "core/model.h"
#include "core/model_config.h"
#include "core/status.h"
#include "trainer/sharded_model.h"

namespace tidal::trainer {

struct TrainState {
  ModelConfig config;
  NamedTensors weights;  // full fp32 CPU parameters (HF names); empty: the masters are the weights
  std::vector<std::pair<std::string, at::Tensor>> flats;  // "<group>.<part>" -> [padded] fp32 CPU
  int64_t optimizer_steps = 0;
  int64_t adam_steps = 0;
  double lr = 0;
  int source_world = 0;  // world size it was gathered from (for logs)
  bool empty() const { return flats.empty(); }
};

// Collective over m.comm(). The state lands on every rank when all_ranks, else on rank 0 only
// (the others get an empty state).
TrainState GatherTrainState(ShardedModel& m, bool all_ranks);

// Loads `state` into `m` (created over the new communicator from state.weights): every flat is
// re-sliced to m's shard; a state with a reference gives m one. Local: no collective.
absl::Status ScatterTrainState(const TrainState& state, ShardedModel& m);

// The state a sharded checkpoint (trainer/checkpoint.h, any world size) holds: each rank's
// shard concatenated in rank order is the padded flat. Not collective. The CPU RNG state is not
// part of it (it is per process).
absl::StatusOr<TrainState> TrainStateFromCheckpoint(const std::string& dir);

// One gradient communicator per train-group membership, created on first use and kept: a group
// that shrinks and grows back reuses its communicator (NCCL communicators cost seconds to build;
// shm ones a rendezvous). A membership is named by the caller (`group`, e.g. GroupName(prefix,
// members) plus whatever must force a fresh one, like a member's restart count); the cache is
// keyed by that name and checks the members match. A device's rank is its position in the sorted
// membership. `bootstrap` is handed to the factory (the NCCL unique id of the membership). Not
// thread-safe: one per driving thread (process).
class CommunicatorCache {
 public:
  using Factory = std::function<absl::StatusOr<std::unique_ptr<Communicator>>(
      const std::string& group, const std::vector<int>& members, int rank, const std::string& bootstrap)>;
  explicit CommunicatorCache(Factory factory) : factory_(std::move(factory)) {}

  // The communicator of `members` (any order, no duplicates) named `group`, as seen from device
  // `self`; `*created` (optional) says whether this call built it.
  absl::StatusOr<Communicator*> Get(const std::string& group, std::vector<int> members, int self,
                                    const std::string& bootstrap = "", bool* created = nullptr);
  size_t size() const { return cache_.size(); }

  // Group name of a membership: "<prefix>.m<d0>_<d1>_..." (distinct per membership).
  static std::string GroupName(const std::string& prefix, const std::vector<int>& sorted_members);

 private:
  struct Entry {
    std::vector<int> members;
    std::unique_ptr<Communicator> comm;
  };
  Factory factory_;
  std::map<std::string, Entry> cache_;
};

}  // namespace tidal::trainer
