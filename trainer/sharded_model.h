// FSDP-style sharded parameters for one train rank: the model's parameters, optimizer state and
// gradients live as flat padded fp32 shards (1/N of every layer group per rank); full layer
// weights exist only while that layer runs.
//
// Layer groups, in ParamSpecs order: the embedding, each decoder layer, the head (final norm and
// untied lm_head). A group's parameters are concatenated into one flat vector padded to a
// multiple of world_size; rank r owns elements [r*S, (r+1)*S).
//
// Per micro-batch (ForwardBackward):
//   forward   gather group (all-gather of the compute-dtype shards), run it without autograd,
//             keep only the layer's input activation, free the gathered weights;
//   head      final norm + chunked logits -> per-token logprobs/entropy -> objective -> grads
//             (trainer/token_head.h: no fp32 copy of the logits, no autograd over the vocabulary);
//   backward  per layer, last to first: re-gather, recompute the layer with autograd from its
//             saved input (activation checkpointing), backprop, reduce-scatter the flat gradient
//             (reduce dtype) into the fp32 gradient shard, free. The reduce-scatter runs on the
//             communication stream while the next layer's backward computes (one in flight).
//   A layer with checkpointing off keeps its forward graph (and its gathered weights) until its
//   backward instead of recomputing: faster, more memory.
//   Tied embeddings: the embedding gathered for the head stays until the embedding backward,
//   whose gradient adds to the head's, and the group is reduce-scattered once.
//   The next group's gather is started before the current group computes (prefetch); on the shm
//   backend that gather is synchronous, so there is no overlap on CPU.
//
// Contract:
// - Collective: every rank calls ForwardBackward / Forward / GradNorm / FullWeights the same
//   number of times in the same order. A rank with no data for a micro-batch passes an empty
//   PackedBatch: it joins the gathers and reduce-scatters with zero gradients.
// - Gradients accumulate over ForwardBackward calls until ZeroGrad; objectives should already be
//   normalised by step-global counts (reduce-scatter sums over ranks).
// - Memory phases (a trainer sharing its device with a rollout engine): ReleaseForRollout() frees
//   the gradient accumulators, optionally moves the AdamW moments to pinned host memory, and
//   returns the allocator's cached blocks (activations, gathered weights) to the device;
//   ReacquireForTraining() brings moments and gradients back. Local (no collective), idempotent.
//   Masters (and the reference) stay resident, so FullWeights / DeviceWeights work in either
//   phase; ForwardBackward, GradNorm, ScaleGrad, AdamWStep, ResetOptimizerState and StateTensors
//   reacquire first when released.
// - One thread drives an instance. Errors inside are TORCH_CHECK (c10::Error), including
//   communicator failures; the Trainer facade turns them into absl::Status.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/communicator.h"
#include "core/model.h"
#include "core/model_config.h"

namespace tidal::trainer {

struct ShardingOptions {
  at::ScalarType compute_dtype = at::kFloat;  // kBFloat16 for bf16 compute (master stays fp32)
  at::ScalarType reduce_dtype = at::kFloat;   // gradient reduce-scatter dtype
  at::Device device = at::kCPU;
  bool activation_checkpointing = true;  // default for every layer
  std::vector<bool> checkpoint_layers;   // per-layer override when non-empty (size = layers)
  bool prefetch = true;
  // The head (trainer/token_head.h): rows per lm_head GEMM (their [rows, vocab] logits, in the
  // compute dtype, exist at once), and the most bytes of logits kept from the forward for the
  // backward (beyond it the backward recomputes each chunk's GEMM).
  int64_t logits_chunk_tokens = 4096;
  int64_t head_keep_bytes = int64_t{6} << 30;
};

struct AdamWOptions {
  double lr = 1e-5;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // decoupled; applied to matrices (dim >= 2) only
};

// One packed micro-batch on the trainer's device: sequences back to back, no padding.
struct PackedBatch {
  at::Tensor ids;         // [T] int64
  at::Tensor cu_seqlens;  // [B+1] int64
  at::Tensor loss_rows;   // [K] int64: row t of the hidden states predicts targets[k]
  at::Tensor targets;     // [K] int64
  double temperature = 1.0;
  bool empty() const { return !ids.defined() || ids.numel() == 0; }
};

struct TokenOutputs {
  at::Tensor logprobs;  // [K] fp32, detached
  at::Tensor entropy;   // [K] fp32, detached (undefined unless requested)
};

// Maps per-token logprobs [K] and entropy [K] (leaves that require grad; entropy undefined unless
// requested) to this micro-batch's scalar loss.
using Objective = std::function<at::Tensor(const at::Tensor& logprobs, const at::Tensor& entropy)>;

class ShardedModel {
 public:
  // `full` holds every parameter (HF names, any dtype/device); each rank keeps only its slices.
  static absl::StatusOr<std::unique_ptr<ShardedModel>> Create(const ModelConfig& config, const NamedTensors& full,
                                                              Communicator* comm, ShardingOptions options);

  TokenOutputs ForwardBackward(const PackedBatch& batch, const Objective& objective, bool with_entropy);
  // Forward only (no gradients), with the trained or the frozen reference parameters.
  TokenOutputs Forward(const PackedBatch& batch, bool with_entropy, bool reference = false);

  void ZeroGrad();
  double GradNorm();              // global L2 norm of the accumulated gradient (collective)
  void ScaleGrad(double factor);  // e.g. clipping
  void AdamWStep(const AdamWOptions& o);
  int64_t optimizer_steps() const { return steps_; }
  // AdamW steps since the moments were last reset (bias correction counts these, not steps_,
  // which is the policy version and never goes back).
  int64_t adam_steps() const { return adam_steps_; }
  // Zeroes both AdamW moments and restarts bias correction: the next step behaves like the first
  // step of a fresh optimizer (e.g. RL after an SFT warm-up). Parameters are untouched.
  void ResetOptimizerState();

  // Copies the current parameters as the frozen reference policy (KL penalty).
  void SnapshotReference();
  bool has_reference() const { return !reference_.empty(); }

  // Full parameters (HF names, fp32, CPU) on rank 0, or on every rank when all_ranks (collective).
  NamedTensors FullWeights(bool all_ranks);
  // Full parameters on every rank, on the trainer's device in `dtype` (collective): views into
  // one buffer per layer group, cast on the device (no host hop). For an engine in this process.
  NamedTensors DeviceWeights(at::ScalarType dtype);

  struct PhaseSwitch {
    double seconds = 0;
    int64_t bytes_freed = 0;      // device bytes given up (gradients, moments, cached blocks)
    int64_t bytes_offloaded = 0;  // moved to pinned host memory
  };
  PhaseSwitch ReleaseForRollout(bool offload_optimizer);
  PhaseSwitch ReacquireForTraining();
  bool released() const { return released_; }

  // This rank's state for checkpoints: name -> fp32 tensor (masters, moments, reference).
  std::vector<std::pair<std::string, at::Tensor>> StateTensors();
  void set_optimizer_steps(int64_t steps) { steps_ = steps; }
  void set_adam_steps(int64_t steps) { adam_steps_ = steps; }

  const ModelConfig& config() const { return config_; }
  Communicator& comm() { return *comm_; }
  const ShardingOptions& options() const { return options_; }
  int64_t shard_elements() const;  // this rank's parameter elements (all groups)

  struct Slot {
    std::string name;
    std::vector<int64_t> shape;
    int64_t offset = 0, numel = 0;
  };
  struct Group {
    std::string name;  // "embed", "layer3", "head"
    std::vector<Slot> params;
    int64_t numel = 0, padded = 0, shard = 0;
    at::Tensor master, exp_avg, exp_avg_sq, grad;  // [shard] fp32 on device
    // This rank's shard cut into runs of parameters with and without weight decay (matrices
    // decay, vectors do not): [offset, length) within the shard, for the fused AdamW.
    std::vector<std::pair<int64_t, int64_t>> decay_runs, plain_runs;
    at::Tensor host_exp_avg, host_exp_avg_sq;  // pinned host copies while offloaded (kept for reuse)
  };

 private:
  class Gatherer;
  ShardedModel(ModelConfig config, Communicator* comm, ShardingOptions options);

  NamedTensors Views(int g, const at::Tensor& flat) const;
  NamedTensors Leaves(int g, const at::Tensor& flat) const;
  // A group's gradient reduce-scatter in flight; Finish adds it into the group's fp32 shard.
  struct PendingReduce {
    int group = -1;
    at::Tensor out;
    std::unique_ptr<CommWork> work;
  };
  PendingReduce StartReduceScatter(int g, const NamedTensors& leaves);
  void FinishReduceScatter(PendingReduce& p);
  bool Checkpointed(int64_t layer) const;
  int EmbedGroup() const { return 0; }
  int LayerGroup(int64_t l) const { return static_cast<int>(1 + l); }
  int HeadGroup() const { return static_cast<int>(groups_.size()) - 1; }


  ModelConfig config_;
  Communicator* comm_;
  ShardingOptions options_;
  std::vector<Group> groups_;
  std::vector<at::Tensor> reference_;  // [shard] fp32 per group when a reference is kept
  int64_t steps_ = 0;
  int64_t adam_steps_ = 0;
  bool released_ = false;
  bool offloaded_ = false;
};

}  // namespace tidal::trainer
