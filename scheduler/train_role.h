// The train role of a worker: one rank of the sharded trainer (trainer/trainer.h).
//
// Contract (worker thread only): every train rank receives the same sequence of SftStep /
// TrainStep / PublishWeights / Checkpoint / ExportModel messages and makes the matching
// collective calls in that order (the controller sends each to all ranks). FullWeights() is a
// collective; the worker then cuts rank 0's copy into weight-sync buckets.
//
// The settings arrive typed: the worker fills TrainRoleConfig, whose objective and optimizer
// part is the trainer's own TrainerOptions built from the recipe by TrainerOptionsFromRecipe
// (recipe enums to trainer enums; nothing travels as a string).
//
// The gradient communicator is borrowed: the worker owns one per train-group membership
// (trainer/reshard.h CommunicatorCache, built through core/communicator_factory.h), so a device
// that leaves and rejoins the elastic train group reuses it. It must outlive the role.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/model.h"
#include "core/recipe.h"
#include "core/tokenizer.h"
#include "scheduler/protocol.h"
#include "trainer/trainer.h"

namespace tidal::scheduler {

// The recipe's algo.* and train.* keys as the trainer's options, on `device` ("cpu", "cuda:0").
// The one mapping from the recipe to the trainer: the workers of `tidal run` and `tidal bench rl`
// both use it. Dynamic sampling stays off here: the controller's trajectory store applies DAPO's
// filter (trainer/advantages.h RewardsUniform) and accounts for the groups it drops.
trainer::TrainerOptions TrainerOptionsFromRecipe(const Recipe& recipe, const std::string& device);

struct TrainRoleConfig {
  ModelConfig model;
  std::string model_path;  // HF checkpoint to start from ("" = random init from seed)
  std::string tokenizer_spec = "byte";  // recipe model.tokenizer: exported beside the weights
  uint64_t seed = 1;
  std::string device = "cpu";
  std::string resume_dir;  // checkpoint to restore ("" = fresh)
  trainer::TrainerOptions trainer;  // optimizer, objective, precision: TrainerOptionsFromRecipe
  // The first RL step after SFT steps starts from fresh AdamW moments (else the SFT gradients'
  // second moments keep damping RL updates for ~1/(1-beta2) steps).
  bool reset_optimizer_after_sft = false;
  bool offload_optimizer = false;  // train.offload: moments to pinned host memory during rollout
};

// What one memory-phase switch did (colocated: the trainer and an engine share the device).
struct PhaseSwitchStats {
  double seconds = 0;
  int64_t bytes_freed = 0, bytes_offloaded = 0;
};

class TrainRole {
 public:
  static absl::StatusOr<std::unique_ptr<TrainRole>> Create(const TrainRoleConfig& config,
                                                           std::shared_ptr<const Tokenizer> tokenizer,
                                                           Communicator* comm);
  // A rank of a resized train group: the whole trainer state (fp32 masters, AdamW moments, step
  // counters, KL reference, learning rate) read from the sharded checkpoint the old group saved
  // in `state_dir` (any world size) and re-sliced for `comm`'s rank and size. Local: no
  // collective.
  static absl::StatusOr<std::unique_ptr<TrainRole>> CreateFromState(const TrainRoleConfig& config,
                                                                    std::shared_ptr<const Tokenizer> tokenizer,
                                                                    Communicator* comm, const std::string& state_dir);
  ~TrainRole();

  int rank() const;
  int world() const;
  int64_t version() const;  // optimizer steps taken (SFT included): the policy version
  absl::StatusOr<SftStepDone> Sft(const SftStep& step);
  absl::StatusOr<TrainStepDone> Train(const TrainStep& step);
  // Full policy weights (fp32, HF names); collective. Non-empty on rank 0, and on every rank
  // when `all_ranks` (a rank that also hosts an engine needs them).
  absl::StatusOr<NamedTensors> FullWeights(bool all_ranks);
  // Full policy weights on this rank's device in `dtype` (collective; every rank gets them):
  // the in-process weight path to an engine in the same worker.
  absl::StatusOr<NamedTensors> DeviceWeights(at::ScalarType dtype);
  // Memory phases (see Trainer::EnterRolloutPhase): before the device rolls out / trains again.
  PhaseSwitchStats EnterRolloutPhase();
  PhaseSwitchStats EnterTrainPhase();
  const std::string& device() const;
  absl::Status SaveCheckpoint(const std::string& dir);
  absl::Status ExportHf(const std::string& dir);

  class Impl;

 private:
  explicit TrainRole(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal::scheduler
