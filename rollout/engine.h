// The rollout inference engine: continuous batching over a paged KV cache, sampling with
// per-token logprobs and policy versions, pause / weight update / resume, memory release.
//
// Contract:
// - Not thread-safe: one thread (the rollout worker loop) calls every method. There are no
//   internal threads; all work happens inside Step().
// - Call order: Create -> { AddRequest | Step | Abort | Pause | Resume | UpdateWeights |
//   ReleaseMemory | ReacquireMemory }*. Step() advances every unfinished request by at most one
//   token (or one prefill chunk) and returns the tokens produced plus the requests that ended.
// - Requests: id must be unique among unfinished requests. A request's outputs are final once
//   it appears in StepOutput::finished (or is returned by Abort / Pause(kAbort)); the engine
//   then forgets it.
// - Logprobs: see rollout/sampler.h for the exact distribution (full-vocabulary
//   log_softmax(logits / temperature), before top-k/top-p/min-p; temperature 1 for greedy).
// - Versions: every generated token records the policy version of the weights that computed
//   its logits. UpdateWeights may be called between any two Steps, paused or not: it copies the
//   given tensors into the engine's existing parameter storage (name and shape must match; the
//   dtype must be the engine's or fp32, which is rounded to the engine's dtype while copying;
//   all are checked before anything is written, so a failed update leaves the old weights
//   intact; captured CUDA graphs read that same storage and stay valid), drops the prefix cache, and sends every running request back to the waiting queue
//   with its tokens kept: its K/V (computed by the old weights) is recomputed by the new weights
//   before it generates again (partial rollout: tokens before the update carry the old version,
//   tokens after it the new one, and each logprob is exact for the weights that sampled it).
//   An update split over several calls (buckets) should be bracketed by Pause(kKeep) / Resume():
//   a Step between two calls would run a mix of old and new tensors; the version is the last
//   call's.
// - Pause(kKeep) stops Step() from doing work but keeps requests (and their KV) to continue on
//   Resume(); Pause(kAbort) also ends every request (finish reason "abort", partial outputs
//   returned). AddRequest is accepted while paused.
// - ReleaseMemory frees the KV cache (and optionally the weights) for a colocated trainer; it
//   requires Pause first. Kept requests lose their KV and re-prefill after ReacquireMemory +
//   Resume. After releasing weights, an UpdateWeights covering every parameter must come
//   before the next working Step.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/model.h"
#include "rollout/sampler.h"
#include "rollout/sequence.h"

namespace tidal::rollout {

struct EngineConfig {
  int64_t block_size = 16;
  // KV cache size: num_blocks if > 0, else as many blocks as kv_cache_bytes holds.
  int64_t num_blocks = 0;
  int64_t kv_cache_bytes = int64_t{256} << 20;
  int64_t max_batch_tokens = 2048;  // tokens computed per step (prefill chunks + decodes)
  int64_t max_seqs = 64;            // sequences running at once
  int64_t max_prefill_chunk = 0;    // prompt tokens per sequence per step; 0 = whole budget
  int64_t max_model_len = 0;        // prompt + output cap; 0 = the model's max_position_embeddings
  bool enable_prefix_caching = true;
  // KV cache on CUDA from free memory: when > 0, the cache takes this fraction of the device
  // memory free after the weights are copied (num_blocks and kv_cache_bytes are then ignored).
  // The rest is left to activations, logits and CUDA graphs (and a colocated trainer).
  double gpu_memory_utilization = 0.0;
  std::string device = "cpu";
  // Weights and KV cache dtype (fp32, fp16 or bf16); unset = the dtype of the given weights.
  // Create casts the weights; the trainer's fp32 updates are cast on copy.
  std::optional<at::ScalarType> dtype;
  bool cuda_graphs = true;  // CUDA: replay decode-only steps from captured graphs
  // CUDA: fused decoder-layer kernels (add + RMSNorm, RoPE + KV append, SiLU-and-mul) instead
  // of the model's ATen ops; same math and roundings (rollout/cuda/fused_layer.cu).
  bool cuda_fused_layers = true;
  int64_t initial_version = 0;
  // Added to every request's stop tokens unless it sets ignore_eos; empty = the model config's.
  std::optional<std::vector<int32_t>> eos_token_ids;
  Detokenizer detokenize;  // required only by requests with stop_strings
};

struct Request {
  std::string id;
  std::vector<int32_t> prompt;
  SamplingParams params;
  // Same seed, prompt, params and weights -> same tokens. Unset: derived from the engine's
  // request counter (reproducible only for the same order of AddRequest calls).
  std::optional<uint64_t> seed;
};

struct RequestOutput {
  std::string id;
  std::vector<int32_t> prompt;
  std::vector<int32_t> tokens;    // generated tokens (a matched stop token or string included)
  std::vector<float> logprobs;    // one per token, see sampler.h
  std::vector<int64_t> versions;  // policy version per token
  FinishReason finish_reason = FinishReason::kNone;
  std::string stop_string;
  int64_t num_cached_tokens = 0;  // tokens served by the prefix cache (over all admissions)
  int64_t num_preemptions = 0;
  double queue_s = 0;  // arrival -> first scheduled
  double ttft_s = 0;   // arrival -> first token
  double e2e_s = 0;    // arrival -> finish
};

struct TokenEvent {
  std::string request_id;
  int32_t token;
  float logprob;
  int64_t version;
  std::vector<TopLogprob> top_logprobs;  // only when the request's params ask for them
};

struct StepOutput {
  std::vector<TokenEvent> tokens;         // every token sampled in this step, batch order
  std::vector<RequestOutput> finished;   // requests that ended in this step
  int64_t num_seqs = 0;                   // sequences in the step
  int64_t num_prefill_tokens = 0;         // tokens of multi-token chunks
  int64_t num_decode_tokens = 0;
  int64_t num_preempted = 0;
};

struct EngineStats {
  int64_t steps = 0;
  int64_t prompt_tokens = 0;     // of added requests
  int64_t generated_tokens = 0;
  int64_t computed_tokens = 0;   // tokens run through the model (prefill + decode + recompute)
  int64_t preemptions = 0;
  int64_t prefix_queried_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t num_blocks = 0;
  int64_t free_blocks = 0;
  // Step timing (wall, Step() entry to return; the step ends with the sampled tokens on the
  // host, so this includes the device work). decode_*: steps with only decode rows.
  double step_seconds = 0;
  int64_t decode_steps = 0;
  int64_t decode_tokens = 0;     // sequences summed over decode-only steps
  double decode_seconds = 0;
  double forward_seconds = 0;    // inside ModelRunner::Run + Sample (device work, synchronised)
  int64_t context_tokens = 0;    // sum over steps and sequences of the keys attended (KV read)
  int64_t decode_context_tokens = 0;
  double PrefixHitRate() const {
    return prefix_queried_tokens ? double(prefix_hit_tokens) / prefix_queried_tokens : 0.0;
  }
};

enum class PauseMode { kAbort, kKeep };

class Engine {
 public:
  // Copies `weights` (HF names, every parameter of ParamSpecs(config)) to the device; the
  // caller's tensors are not aliased.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const ModelConfig& config,
                                                        const NamedTensors& weights,
                                                        EngineConfig engine_config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  absl::Status AddRequest(Request request);
  absl::StatusOr<StepOutput> Step();
  // Ends one request; returns its partial output. NotFound for an unknown or finished id.
  absl::StatusOr<RequestOutput> Abort(const std::string& id);
  // kAbort returns the aborted requests' partial outputs; kKeep returns nothing.
  std::vector<RequestOutput> Pause(PauseMode mode);
  void Resume();

  absl::Status UpdateWeights(const NamedTensors& named, int64_t version);
  // Same from one flat buffer: `layout` lists the tensors packed back to back (in order, each
  // numel elements of the buffer's dtype), e.g. a weight-sync bucket.
  absl::Status UpdateWeightsFlat(const at::Tensor& flat, std::span<const ParamSpec> layout,
                                 int64_t version);

  absl::Status ReleaseMemory(bool weights = false);
  absl::Status ReacquireMemory();

  // Adds the requests, steps until all of them finished, returns them in the given order.
  // FailedPrecondition while paused.
  absl::StatusOr<std::vector<RequestOutput>> Generate(std::vector<Request> requests);

  bool HasUnfinished() const;
  int64_t NumUnfinished() const;
  bool paused() const;
  int64_t version() const;
  const NamedTensors& weights() const;
  const ModelConfig& model_config() const;
  const EngineConfig& config() const;  // num_blocks, max_model_len and dtype resolved
  // True when steps run the CUDA kernels (paged attention, GPU sampling, decode graphs).
  bool uses_cuda_kernels() const;
  EngineStats stats() const;

 private:
  class Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal::rollout
