// Tag policies: where each device's tag (rollout | train) should be right now.
//
// Contract: pure functions of a snapshot (PolicyInputs) the controller builds on its event loop
// every tick; the controller applies the difference between the desired and current tags
// (a move to train pauses the device's engine, a move to rollout resumes it). Every input is also
// exported as a metric, so a tag move can be explained from /metrics alone.
//
// Policies (a closed set, hence std::variant):
// - static:    tags never move.
// - colocated: every device is a train rank and hosts an engine. All devices roll out until a
//              train batch is ready, then all switch to train (engines paused, KV memory
//              released), then all return to rollout. Train steps are gang-scheduled.
// - elastic:   tag moves never re-shard parameters or optimizer state; rollout work moves
//              instead. The train group (the home-train devices) is what the recipe tags train,
//              unless pool.elastic.resize lets the controller grow or shrink it at step boundaries
//              (elastic_policy.h, controller_resize.cpp): then a device's home changes with it.
//              Decision rule, per home-train device d:
//                train    if a train step is running or a batch is ready          (recall)
//                rollout  else if dispatchable_groups > 0 or d has rollout work   (lend)
//                train    otherwise (nothing to do on either side)
//              Home-rollout devices stay rollout: they pull work in small units (one group per
//              credit), so in a long tail a drained device takes the next prompts instead of
//              idling; a lent train device's unfinished sequences stay paused in its engine across
//              the train step and continue afterwards with the new weights (partial rollouts).
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/status.h"
#include "scheduler/device_pool.h"

namespace tidal::scheduler {

struct StaticPolicy {};
struct ColocatedPolicy {};
struct ElasticPolicy {};
using TagPolicy = std::variant<StaticPolicy, ColocatedPolicy, ElasticPolicy>;

absl::StatusOr<TagPolicy> ParseTagPolicy(std::string_view name);
// The recipe's pool.policy as its policy (the controller's path: typed, no name in between).
TagPolicy TagPolicyFor(PoolPolicy policy);
std::string TagPolicyName(const TagPolicy& policy);

struct PolicyDevice {
  Tag home = Tag::kRollout;
  Tag tag = Tag::kRollout;
  int rollout_groups = 0;  // groups dispatched to the device and not yet returned (incl. paused)
};

struct PolicyInputs {
  std::vector<PolicyDevice> devices;
  int dispatchable_groups = 0;  // groups the staleness gate and the prompt supply allow now
  bool batch_ready = false;     // the store holds a full train batch
  bool train_running = false;   // a train step is in progress on the train group
  bool warmup = false;          // the SFT warm-up runs (between its steps there is no rollout work)
};

// Desired tag per device (same order as inputs.devices).
std::vector<Tag> DecideTags(const TagPolicy& policy, const PolicyInputs& inputs);

// The timeline reason (scheduler/tag_timeline.h) of a move DecideTags asked for: "gang" under
// colocated; under elastic "lend" (to rollout) or "recall" (back to train).
const char* MoveReason(const TagPolicy& policy, Tag to);

// Which devices form the sharded train group under `policy` at the start (home-train ones, or
// all when colocated); only pool.elastic.resize changes it later.
std::vector<int> TrainGroup(const TagPolicy& policy, const std::vector<Tag>& home_tags);
// Whether the device hosts an inference engine at some point of the run.
bool HostsEngine(const TagPolicy& policy, Tag home);

}  // namespace tidal::scheduler
