// The controller <-> worker protocol: every message of tidal's control and data planes, on top
// of core/messaging.h (ROUTER at the controller, one DEALER per worker).
//
// Session, in order (each line one message; -> controller to worker, <- worker to controller):
//   <- Register{role:"worker", rank, pid, info:{device}}         worker connects (a request)
//   -> WorkerSetup (the reply)                                   run dir, recipe, train group
//   <- WorkerReady{engine, trainer, openai_url}                  model/engine/trainer built
//   <- AgentSessions{sessions, calls_in_flight}                  agent endpoint: finished
//                                                                sessions and the current load
//   -> SetTag{tag}                                               any time; ordered with work
//   -> RolloutWork{prompt_id, attempt, ...}                      one group; a credit is one group
//   <- RolloutResult{prompt_id, attempt, samples}                the finished group
//   -> AbortWork{prompt_ids} / <- WorkAborted{prompt_ids}       give unfinished work back
//   -> SftStep / <- SftStepDone                                  warm-up, train ranks only
//   -> TrainStep{step, groups} / <- TrainStepDone                train ranks; rank 0 first sends
//                                                                the new version's WeightBuckets
//   -> PublishWeights{version} / <- WeightBucket x N, WeightsPublished   (rank 0)
//   -> WeightBucket x N (relayed by the controller, frame = bytes) / <- WeightApplied{version, ok}
//      (weight_transport "inprocess": no buckets at all; each train rank installs the version
//      into its own engine and sends WeightApplied)
//      (weight_transport "nccl", weight_sync/broadcast_publisher.h: the version is broadcast in a
//      group of train rank 0 and the engine workers without a trainer, scheduler/broadcast_control.h)
//   -> WeightGroupEpoch (train ranks)                           the group's membership changed
//   <- WeightGroupKey (train rank 0)                             the new epoch's rendezvous key
//   -> WeightGroupJoin (receivers)                               ticket: connect to the epoch
//   <- WeightBroadcastStarting (rank 0) / -> WeightIncoming (receivers)   version V follows
//   <- WeightBroadcastDone (rank 0) / <- WeightApplied (receivers)        outcome on each side
//   -> Checkpoint / <- CheckpointDone;  -> ExportModel / <- ExportDone   (train ranks)
//   -> TrainGroupSave / <- TrainGroupSaved (old members), then
//   -> TrainGroupJoin / <- TrainGroupJoined (old and new members)   elastic resize, step boundary
//   <- WorkerMetrics{families}                                   about once a second, and after
//                                                                every train step: the worker's
//                                                                metrics (core/metrics.h)
//   -> Shutdown                                                  worker exits 0
//
// Ordering: the messaging layer keeps per-connection order, and the protocol relies on it: the
// controller relays a version's buckets before it dispatches work meant for that version, and a
// worker handles its messages in arrival order (it applies a complete version before it starts
// the next RolloutWork), so new work never starts on old weights. Train rank 0 sends a version's
// buckets before TrainStepDone, so the controller holds the whole version when it learns the step
// finished.
//
// Everything here is plain data (torch-free).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/message.h"
#include "scheduler/tag.h"
#include "scheduler/trajectory.h"
#include "weight_sync/transport.h"

namespace tidal::scheduler {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Trajectory, prompt_ids, response_ids, logprobs,
                                                versions, loss_mask, reward, correct, finish_reason, text)

struct WorkerSetup {
  std::string run_dir;
  std::string recipe_path;        // the resolved recipe the controller wrote into run_dir
  int device = -1;                // index into the pool
  std::string device_name;        // "cpu:0"
  std::vector<int> train_group;   // device indices of the train ranks, rank order
  int train_rank = -1;            // this worker's rank in train_group, -1 if none
  bool hosts_engine = false;
  std::string comm_group;         // ShmCommunicator group name (unique per run)
  Tag tag = Tag::kRollout;        // initial tag (on the wire "rollout" | "train")
  bool release_engine_memory = false;  // colocated: free the KV cache while tagged train
  std::string resume_dir;          // checkpoint to resume the trainer from ("" = fresh)
  std::string nccl_id;             // hex ncclUniqueId of the train group (CUDA, > 1 rank; "" otherwise)
  // What the train ranks publish through (on the wire its TransportName: "zmq" | "inprocess").
  weight_sync::TransportKind weight_transport = weight_sync::TransportKind::kZmq;
};
TIDAL_MESSAGE(WorkerSetup, run_dir, recipe_path, device, device_name, train_group, train_rank,
              hosts_engine, comm_group, tag, release_engine_memory, resume_dir, nccl_id, weight_transport)

struct WorkerReady {
  bool engine = false;
  bool trainer = false;
  double init_seconds = 0;
  std::string openai_url;  // the agent endpoint this worker serves ("" = none)
};
TIDAL_MESSAGE(WorkerReady, engine, trainer, init_seconds, openai_url)

struct SetTag {
  Tag tag = Tag::kRollout;  // on the wire "rollout" | "train"
};
TIDAL_MESSAGE(SetTag, tag)

// One prompt's group. The worker encodes the prompt, samples `group_size` responses, scores them
// with the environment, and answers with one RolloutResult.
struct RolloutWork {
  int64_t prompt_id = -1;
  int64_t attempt = 0;
  uint64_t task_seed = 0;
  std::string prompt;
  nlohmann::json hidden;      // the task's hidden answer, for Score
  int32_t group_size = 1;
  bool eval = false;          // one sample, not trained on (prompt_id indexes the eval split)
  bool greedy = false;        // argmax decoding instead of the rollout sampling settings
  int64_t max_new_tokens = 0; // 0 = the recipe's rollout.max_new_tokens
};
TIDAL_MESSAGE(RolloutWork, prompt_id, attempt, task_seed, prompt, hidden, group_size, eval, greedy,
              max_new_tokens)

struct RolloutResult {
  int64_t prompt_id = -1;
  int64_t attempt = 0;
  bool eval = false;
  std::vector<Trajectory> samples;
  double queue_seconds = 0;
  double generate_seconds = 0;
  std::string error;  // non-empty: the group failed (env error); the controller drops it
};
TIDAL_MESSAGE(RolloutResult, prompt_id, attempt, eval, samples, queue_seconds, generate_seconds,
              error)

// An external agent's session on the OpenAI-compatible endpoint, once it reported its reward:
// its trajectories (one per chain of calls, scheduler/agent_groups.h SessionTrajectories),
// token-exact (what the engine was given and sampled), each carrying the session's reward.
struct AgentSession {
  std::string session_id;
  std::string group;  // sessions of one group are trained as one GRPO group ("" = none)
  double reward = 0;
  std::vector<Trajectory> trajectories;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(AgentSession, session_id, group, reward, trajectories)

// Sent when sessions finish, and when the number of agent calls the worker holds changes (the
// tag policy counts them as rollout work).
struct AgentSessions {
  std::vector<AgentSession> sessions;
  int64_t calls_in_flight = 0;
};
TIDAL_MESSAGE(AgentSessions, sessions, calls_in_flight)

struct AbortWork {
  std::vector<int64_t> prompt_ids;  // empty = everything the worker holds
};
TIDAL_MESSAGE(AbortWork, prompt_ids)

struct WorkAborted {
  std::vector<int64_t> prompt_ids;
};
TIDAL_MESSAGE(WorkAborted, prompt_ids)

// Supervised warm-up: prompt/target text pairs; every train rank receives its share.
struct SftExample {
  std::string prompt;
  std::string target;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SftExample, prompt, target)

struct SftStep {
  int64_t step = 0;
  double lr = 0;
  std::vector<SftExample> examples;
};
TIDAL_MESSAGE(SftStep, step, lr, examples)

struct SftStepDone {
  int64_t step = 0;
  double loss = 0;
  int64_t tokens = 0;
  double seconds = 0;
};
TIDAL_MESSAGE(SftStepDone, step, loss, tokens, seconds)

// One RL step: this rank's share of the batch (whole groups). The policy after it is version
// step + 1.
struct TrainGroupData {
  int64_t prompt_id = -1;
  std::vector<Trajectory> samples;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(TrainGroupData, prompt_id, samples)

struct TrainStep {
  int64_t step = 0;
  std::vector<TrainGroupData> groups;
};
TIDAL_MESSAGE(TrainStep, step, groups)

struct TrainStepDone {
  int64_t step = 0;
  int64_t version = 0;                                  // policy version after the step
  nlohmann::json stats = nlohmann::json::object();     // trainer metrics (loss, kl, clip, ...)
  int64_t tokens = 0;
  double seconds = 0;
  double publish_seconds = 0;                           // weight gather + bucket send (rank 0)
};
TIDAL_MESSAGE(TrainStepDone, step, version, stats, tokens, seconds, publish_seconds)

// Every train rank gathers the policy (a collective); rank 0 streams it as the trainer's current
// version (its optimizer step count).
struct PublishWeights {
  std::string reason;
};
TIDAL_MESSAGE(PublishWeights, reason)

struct WeightsPublished {
  int64_t version = 0;
  int32_t buckets = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};
TIDAL_MESSAGE(WeightsPublished, version, buckets, bytes, seconds)

struct WeightApplied {
  int64_t version = 0;
  bool ok = false;
  std::string error;
  double seconds = 0;
  int64_t serving_version = -1;  // what the engine serves after this (the old one on failure)
};
TIDAL_MESSAGE(WeightApplied, version, ok, error, seconds, serving_version)

// The weight-broadcast group (weight_transport "nccl"). Epochs and tickets are the controller's
// BroadcastMembership (weight_sync/broadcast_membership.h); keys travel hex-encoded.
struct WeightGroupEpoch {
  int64_t epoch = 0;
  int32_t world_size = 1;  // 1: no receiver; rank 0 broadcasts nothing
  std::string group_base;  // CPU pools: shm group names `<group_base>.e<epoch>`
};
TIDAL_MESSAGE(WeightGroupEpoch, epoch, world_size, group_base)

struct WeightGroupKey {
  int64_t epoch = 0;
  std::string key_hex;  // ncclUniqueId bytes (CUDA) or the shm group name (CPU)
};
TIDAL_MESSAGE(WeightGroupKey, epoch, key_hex)

struct WeightGroupJoin {
  int64_t epoch = 0;
  int32_t rank = 0;
  int32_t world_size = 0;
  std::string key_hex;
};
TIDAL_MESSAGE(WeightGroupJoin, epoch, rank, world_size, key_hex)

struct WeightBroadcastStarting {
  int64_t epoch = 0;
  int64_t version = 0;
};
TIDAL_MESSAGE(WeightBroadcastStarting, epoch, version)

struct WeightIncoming {
  int64_t epoch = 0;
  int64_t version = 0;
};
TIDAL_MESSAGE(WeightIncoming, epoch, version)

struct WeightBroadcastDone {
  int64_t epoch = 0;
  int64_t version = 0;
  bool ok = false;
  std::string error;
  bool group_dead = false;  // the epoch's group failed (connect or collective): start a new one
  int64_t bytes = 0;        // wire bytes of the version
  int32_t receivers = 0;
  double connect_seconds = 0;
  double send_seconds = 0;
};
TIDAL_MESSAGE(WeightBroadcastDone, epoch, version, ok, error, group_dead, bytes, receivers, connect_seconds,
              send_seconds)

struct Checkpoint {
  int64_t step = 0;
  std::string dir;
};
TIDAL_MESSAGE(Checkpoint, step, dir)

struct CheckpointDone {
  int64_t step = 0;
  std::string dir;
  std::string error;
};
TIDAL_MESSAGE(CheckpointDone, step, dir, error)

struct ExportModel {
  std::string dir;
};
TIDAL_MESSAGE(ExportModel, dir)

struct ExportDone {
  std::string dir;
  std::string error;
};
TIDAL_MESSAGE(ExportDone, dir, error)

// The elastic train group (docs/controller.md, "Elastic train group"), at a step boundary:
// 1. every member of the old group saves its shard of the trainer state (collective over the old
//    communicator) into `dir`;
struct TrainGroupSave {
  int64_t step = 0;
  std::string dir;
};
TIDAL_MESSAGE(TrainGroupSave, step, dir)

struct TrainGroupSaved {
  int64_t step = 0;
  std::string error;  // non-empty: the save failed (the run stops)
  double seconds = 0;
};
TIDAL_MESSAGE(TrainGroupSaved, step, error, seconds)

// 2. every device of the old or the new group: a member of `members` (device indices, rank
//    order) builds its trainer over the membership's communicator (cached per `comm_group`) from
//    the state in `state_dir`, any old world size; a device not in `members` drops its trainer.
struct TrainGroupJoin {
  int64_t step = 0;
  std::vector<int> members;
  std::string comm_group;  // names the membership's communicator (shm segment / NCCL errors)
  std::string nccl_id;     // hex ncclUniqueId of this membership (CUDA, > 1 member; "" otherwise)
  std::string state_dir;
};
TIDAL_MESSAGE(TrainGroupJoin, step, members, comm_group, nccl_id, state_dir)

struct TrainGroupJoined {
  int64_t step = 0;
  int32_t rank = -1;  // -1: left the group
  int32_t world = 0;
  std::string error;
  double seconds = 0;
  bool cached_communicator = false;  // the membership's communicator existed already
};
TIDAL_MESSAGE(TrainGroupJoined, step, rank, world, error, seconds, cached_communicator)

struct Shutdown {
  std::string reason;
};
TIDAL_MESSAGE(Shutdown, reason)

// A snapshot of the worker's ProcessRegistry() (core/metrics.h FamiliesToJson): cumulative
// counters, histograms and summaries plus current gauges, so a lost or late snapshot loses no
// events. The controller serves the newest one per device on /metrics.
struct WorkerMetrics {
  nlohmann::json families = nlohmann::json::array();
};
TIDAL_MESSAGE(WorkerMetrics, families)

// A worker-side failure the controller should know about (the worker keeps running).
struct WorkerError {
  std::string what;
  std::string detail;
};
TIDAL_MESSAGE(WorkerError, what, detail)

}  // namespace tidal::scheduler
