// The train role of a worker: one rank of the sharded trainer (trainer/trainer.h).
//
// Contract (worker thread only): every train rank receives the same sequence of SftStep /
// TrainStep / PublishWeights / Checkpoint / ExportModel messages and makes the matching
// collective calls in that order (the controller sends each to all ranks). FullWeights() is a
// collective; the worker then cuts rank 0's copy into weight-sync buckets.
//
// The settings arrive as plain data (TrainRoleConfig, filled from the recipe by the worker) so
// this header and its callers need neither the trainer's nor the recipe's headers.
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
#include "core/tokenizer.h"
#include "scheduler/protocol.h"

namespace tidal::scheduler {

struct TrainRoleConfig {
  ModelConfig model;
  std::string model_path;  // HF checkpoint to start from ("" = random init from seed)
  std::string tokenizer_spec = "byte";  // recipe model.tokenizer: exported beside the weights
  uint64_t seed = 1;
  std::string device = "cpu";
  std::string resume_dir;  // checkpoint to restore ("" = fresh)
  // Optimizer / objective.
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, weight_decay = 0, grad_clip = 1.0;
  std::string loss = "ppo";            // ppo | gspo | cispo
  std::string advantage = "grpo";      // grpo | rloo | reinforce++
  bool adv_std_norm = true;
  std::string loss_agg = "token_mean"; // token_mean | seq_mean | drgrpo
  double max_len = 0;                  // drgrpo normaliser (rollout.max_new_tokens)
  double clip_low = 0.2, clip_high = 0.28;
  double kl_coef = 0, entropy_coef = 0;
  std::string kl_estimator = "k3";
  std::string is_correction = "tis";
  double is_cap = 2.0;
  double temperature = 1.0;
  int64_t micro_batch_tokens = 4096;
  // The first RL step after SFT steps starts from fresh AdamW moments (else the SFT gradients'
  // second moments keep damping RL updates for ~1/(1-beta2) steps).
  bool reset_optimizer_after_sft = false;
  bool bf16 = false, reduce_bf16 = false, activation_checkpointing = false;
  int64_t max_nonfinite_steps = 3;  // train.max_nonfinite_steps
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
