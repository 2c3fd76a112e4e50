// The rollout role of a worker: an inference engine that turns RolloutWork (one prompt's group)
// into scored trajectories, and takes new policy versions from weight sync.
//
// Contract (worker thread only):
// - Add() queues a group's group_size requests; Step() advances the engine by one step while the
//   role is active and returns the groups that finished (all samples done and scored). A group
//   stays inside the engine across SetActive(false)/SetActive(true) and across weight updates:
//   its later tokens carry the newer version (partial rollouts).
// - Weight updates: OnBucket() collects a version's buckets (weight_sync/weight_assembler.h) and,
//   only once every bucket has passed its checksum, swaps the engine's weights; a version that
//   fails anywhere is dropped whole and the engine keeps serving its previous version. Install()
//   swaps in weights this process already holds (a train rank that also hosts an engine).
// - Abort() removes groups (all when `ids` is empty) and returns the prompt ids it removed.
// - Agent endpoint (settings.openai.serve): the role also serves the OpenAI-compatible API
//   (rollout/openai_server.h) on its engine. External calls are spliced into the same engine
//   steps as the controller's groups, wait while the role is inactive or has no weights yet, and
//   carry per-token versions like any trajectory. TakeSessions() returns the sessions whose
//   reward has been reported (token-exact; see openai_server.h).
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "core/model.h"
#include "core/recipe.h"
#include "core/tokenizer.h"
#include "envs/environment.h"
#include "rollout/openai_server.h"
#include "scheduler/protocol.h"
#include "weight_sync/weight_bucket.h"

namespace tidal::scheduler {

struct OpenAISettings {
  bool serve = false;
  std::string bind = "127.0.0.1";
  int port = 0;  // 0: any free port
  int64_t default_max_tokens = 64;
  std::string bearer_token;  // non-empty: required of every request
};

// The engine's weight and KV-cache dtype for `recipe` on `device`: bf16 on CUDA (its kernels
// and KV cache are made for it), model.dtype on CPU; the trainer's fp32 updates are rounded on
// copy. The one rule; `tidal run`'s workers and `tidal bench rl` use it.
at::ScalarType EngineDtypeFor(const Recipe& recipe, const std::string& device);
// The recipe's rollout.* engine keys (block_size, kv_blocks, max_batch_tokens, max_seqs) as the
// engine's config on `device`, in EngineDtypeFor's dtype.
rollout::EngineConfig EngineConfigFromRecipe(const Recipe& recipe, const std::string& device);

// Plain settings (filled from the recipe by the worker).
struct RolloutSettings {
  OpenAISettings openai;
  envs::EnvSpec env;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0;
  int64_t top_k = 0;
  int64_t max_new_tokens = 64;       // per model turn
  bool multi_turn = false;           // play samples as step() episodes (env.multi_turn)
  int64_t max_turns = 4;
  // The engine's own config (EngineConfigFromRecipe: sizes, device, dtype); Create adds the
  // tokenizer's stop tokens.
  rollout::EngineConfig engine;
  bool release_memory_when_idle = false;  // colocated: free the KV cache while tagged train
};

class RolloutRole {
 public:
  static absl::StatusOr<std::unique_ptr<RolloutRole>> Create(const RolloutSettings& settings,
                                                             const ModelConfig& config,
                                                             std::shared_ptr<const Tokenizer> tokenizer);
  ~RolloutRole();

  void SetActive(bool active);
  bool active() const;
  // Active, has weights, and holds unfinished work.
  bool HasWork() const;
  absl::Status Add(const RolloutWork& work);
  std::vector<RolloutResult> Step();
  std::vector<int64_t> Abort(const std::vector<int64_t>& ids);

  // Returns the outcome when the bucket completes its version or poisons it; nullopt otherwise.
  std::optional<WeightApplied> OnBucket(const weight_sync::WeightBucket& bucket, const Payload& bytes);
  WeightApplied Install(const NamedTensors& weights, int64_t version);
  int64_t version() const;  // -1 before the first version

  // The agent endpoint ("" when not serving), e.g. "http://127.0.0.1:8000/v1".
  std::string openai_url() const;
  std::vector<rollout::SessionTrajectory> TakeSessions();
  int64_t AgentCallsInFlight() const;

  class Impl;

 private:
  explicit RolloutRole(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal::scheduler
