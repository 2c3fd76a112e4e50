// The trainer one train rank runs: sharded parameters (ShardedModel), the RL / SFT objectives,
// AdamW, checkpoints. The controller's train role drives it.
//
// Contract:
// - Collective: every train rank of the communicator calls the same methods in the same order
//   (TrainStep, SftStep, FullWeights, SaveCheckpoint, LoadCheckpoint, ExportHf). Each rank
//   passes its own share of the step's samples; shares may differ in size (even be empty), but a
//   GRPO/RLOO group must not be split across ranks when advantages are estimated here.
// - SftStep takes one optimizer step, TrainStep `mini_batches` (default 1): micro-batches packed
//   by `micro_batch_tokens` accumulate gradients; objectives are normalised over the whole update
//   on all ranks, so the update equals the unsharded full-batch update.
// - Policy version: step() counts optimizer steps; weights after step k are version k. Tokens
//   whose policy_versions are older than step() are off-policy (reported as stale).
// - Ratio baseline: the PPO/GSPO/CISPO ratio is taken against the trainer's own logprobs at the
//   start of the step (proximal policy; value 1 in the first update) and the rollout gap is
//   corrected by TIS/MIS, or, with ratio_against_rollout, directly against the rollout logprobs
//   (clipping then bounds staleness and mismatch; TIS/MIS are not applied on top).
// - Errors: absl::Status. Bad input (shapes, ids out of vocab, missing fields) is
//   kInvalidArgument; a failed collective or tensor error is kInternal with the cause. After a
//   kInternal error from a collective the communicator is failed: rebuild both.
// - Numerics: nothing non-finite reaches the weights (see max_nonfinite_steps); FullWeights and
//   ExportHf refuse (kDataLoss) parameters that are not finite, so no such policy is published
//   to rollout or exported.
// - Not thread-safe; call from one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/model.h"
#include "trainer/advantages.h"
#include "trainer/losses.h"
#include "trainer/reshard.h"
#include "trainer/rollout_correction.h"
#include "trainer/sharded_model.h"
#include "trainer/train_batch.h"

namespace tidal::trainer {

struct TrainerOptions {
  AdamWOptions optimizer;
  double max_grad_norm = 1.0;  // global-norm clipping; <= 0 disables
  PolicyLossConfig loss;
  AdvantageOptions advantages;
  bool dynamic_sampling = false;  // DAPO: drop groups whose rewards are all equal
  IsCorrection is_correction = IsCorrection::kNone;
  double is_cap = 2.0;
  bool ratio_against_rollout = false;
  double temperature = 1.0;       // sampling temperature of the rollouts (logprobs use it)
  bool compute_entropy = true;    // entropy metric (and bonus when loss.entropy_coef != 0)
  int64_t micro_batch_tokens = 4096;
  // Optimizer updates per TrainStep: the step's samples are split into this many consecutive
  // parts (per rank), one update each; the proximal logprobs come from a forward pass before
  // the first update, so later updates see ratios != 1 and PPO clipping applies.
  int64_t mini_batches = 1;
  // An update whose loss (on any rank) or global gradient norm is not finite is skipped on every
  // rank: gradients dropped, weights and AdamW moments kept, the policy version still advances
  // (so the caller's version bookkeeping is unchanged). After this many steps in a row with a
  // skipped update, TrainStep / SftStep fail with kFailedPrecondition; 0 = never.
  int64_t max_nonfinite_steps = 3;
  ShardingOptions sharding;  // precision (compute/reduce dtype), device, checkpointing, prefetch
};

class Trainer {
 public:
  // `initial` holds the full model on every rank (HF names); `comm` must outlive the trainer.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const ModelConfig& config, const NamedTensors& initial,
                                                         const TrainerOptions& options, Communicator* comm);
  static absl::StatusOr<std::unique_ptr<Trainer>> CreateFromHf(const std::string& hf_dir, const TrainerOptions& options,
                                                               Communicator* comm);
  ~Trainer();

  // One RL optimizer step on this rank's share of the batch.
  absl::StatusOr<StepStats> TrainStep(const std::vector<TrainSample>& batch);
  // One supervised step (masked token-mean cross-entropy on target tokens).
  absl::StatusOr<StepStats> SftStep(const std::vector<SftSample>& batch);

  // Full parameters (fp32, CPU, HF names) on rank 0 (empty elsewhere) or on every rank.
  absl::StatusOr<NamedTensors> FullWeights(bool all_ranks = false);
  // Full parameters on every rank, on the trainer's device, cast to `dtype` (collective): what an
  // engine in the same process copies from, device to device.
  absl::StatusOr<NamedTensors> DeviceWeights(at::ScalarType dtype);
  // Writes config.json + model.safetensors (rank 0 writes; collective).
  absl::Status ExportHf(const std::string& dir);

  // Sharded checkpoint of parameters, optimizer state, step, RNG and the caller's opaque
  // data-loader state, committed atomically to `dir` (see trainer/checkpoint.h).
  absl::Status SaveCheckpoint(const std::string& dir, const std::string& loader_state = "");
  // Restores everything SaveCheckpoint wrote (same world size); returns the loader state.
  absl::StatusOr<std::string> LoadCheckpoint(const std::string& dir);

  // Memory phases for a device shared with a rollout engine (see ShardedModel): before rollout,
  // free gradients and cached blocks and, with `offload_optimizer`, move the AdamW moments to
  // pinned host memory; the next step (or EnterTrainPhase) brings them back. Local to this rank.
  ShardedModel::PhaseSwitch EnterRolloutPhase(bool offload_optimizer);
  ShardedModel::PhaseSwitch EnterTrainPhase();

  void SetLearningRate(double lr);
  // Fresh AdamW moments and bias correction from the next step on (the policy version, step(),
  // keeps counting). Local to this rank's shard, so call it on every rank.
  void ResetOptimizer();
  // Makes the current parameters the KL reference (when the objective has a KL term; Create
  // takes the first snapshot). E.g. after an SFT warm-up: RL is then kept near the warmed-up
  // policy, not near the initial weights. Local to this rank's shard: call it on every rank.
  void SnapshotReference();
  int64_t step() const;

  // Elastic train group (trainer/reshard.h): the full optimizer state, gathered over this
  // trainer's communicator at a step boundary (collective; on every rank when all_ranks), and a
  // trainer over another communicator (any world size) that continues from it.
  absl::StatusOr<TrainState> ExportState(bool all_ranks = true);
  static absl::StatusOr<std::unique_ptr<Trainer>> CreateFromState(const TrainState& state,
                                                                   const TrainerOptions& options, Communicator* comm);
  const ModelConfig& config() const;
  const TrainerOptions& options() const;

 private:
  class Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal::trainer
