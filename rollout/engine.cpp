#include "rollout/engine.h"

#include <c10/core/InferenceMode.h>

#include <set>
#include <unordered_map>

#include "core/clock.h"
#include "core/hash.h"
#include "rollout/block_manager.h"
#include "rollout/fused_projections.h"
#include "rollout/model_runner.h"
#include "rollout/batch_scheduler.h"
#include "rollout/step_plan.h"

namespace tidal::rollout {
namespace {

std::string ShapeStr(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

uint64_t DefaultSeed(uint64_t counter) { return SplitMix64(counter); }

}  // namespace

class Engine::Impl {
 public:
  ModelConfig model;
  EngineConfig cfg;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  NamedTensors weights;
  std::vector<ParamSpec> specs;
  std::unique_ptr<BlockManager> blocks;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<ModelRunner> runner;
  std::unordered_map<std::string, std::unique_ptr<Sequence>> seqs;
  std::vector<int32_t> eos;
  int64_t version = 0;
  bool paused = false;
  bool kv_released = false;
  bool weights_released = false;
  std::set<std::string> stale_params;  // reallocated after a release, not yet rewritten
  uint64_t request_counter = 0;
  EngineStats stats;

  RequestOutput MakeOutput(const Sequence& s) const {
    RequestOutput o;
    o.id = s.id;
    o.prompt.assign(s.tokens.begin(), s.tokens.begin() + s.num_prompt_tokens);
    o.tokens.assign(s.tokens.begin() + s.num_prompt_tokens, s.tokens.end());
    o.logprobs = s.logprobs;
    o.versions = s.versions;
    o.finish_reason = s.finish_reason;
    o.stop_string = s.stop_string;
    o.num_cached_tokens = s.num_cached_tokens;
    o.num_preemptions = s.num_preemptions;
    if (s.scheduled_once) o.queue_s = SecondsBetween(s.arrival, s.first_scheduled);
    if (!s.logprobs.empty()) o.ttft_s = SecondsBetween(s.arrival, s.first_token);
    o.e2e_s = SecondsBetween(s.arrival, s.finished);
    return o;
  }

  RequestOutput Retire(Sequence* s, FinishReason reason) {
    sched->Finish(s);
    s->finish_reason = reason;
    s->finished = Clock::now();
    RequestOutput o = MakeOutput(*s);
    seqs.erase(s->id);
    return o;
  }

  absl::Status ValidateRequest(const Request& r) const {
    if (r.id.empty()) return absl::InvalidArgumentError("request: empty id");
    if (seqs.count(r.id)) {
      return absl::AlreadyExistsError(absl::StrCat("request '", r.id, "' is already in flight"));
    }
    if (r.prompt.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("request '", r.id, "': empty prompt"));
    }
    for (size_t i = 0; i < r.prompt.size(); ++i) {
      if (r.prompt[i] < 0 || r.prompt[i] >= model.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("request '", r.id, "': prompt token ", i,
                                                       " = ", r.prompt[i], " outside [0, ",
                                                       model.vocab_size, ")"));
      }
    }
    if (absl::Status s = r.params.Validate(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("request '", r.id, "': ", s.message()));
    }
    if (!r.params.stop_strings.empty() && !cfg.detokenize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request '", r.id, "': stop_strings need EngineConfig::detokenize"));
    }
    const int64_t prompt = std::ssize(r.prompt);
    if (prompt >= cfg.max_model_len) {
      return absl::InvalidArgumentError(absl::StrCat("request '", r.id, "': prompt of ", prompt,
                                                     " tokens leaves no room under max_model_len ",
                                                     cfg.max_model_len));
    }
    const int64_t worst = std::min(prompt + r.params.max_new_tokens, cfg.max_model_len);
    if (blocks->BlocksFor(worst) > blocks->num_blocks()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request '", r.id, "': ", worst, " tokens need ", blocks->BlocksFor(worst),
          " KV blocks but the cache has ", blocks->num_blocks()));
    }
    return absl::OkStatus();
  }

  absl::Status CheckUpdate(const NamedTensors& named) const {
    for (const auto& [name, t] : named) {
      auto it = weights.find(name);
      if (it == weights.end()) {
        return absl::NotFoundError(absl::StrCat("update_weights: unknown parameter '", name, "'"));
      }
      if (!t.defined()) {
        return absl::InvalidArgumentError(absl::StrCat("update_weights: '", name, "' is undefined"));
      }
      if (t.sizes() != it->second.sizes()) {
        return absl::InvalidArgumentError(absl::StrCat("update_weights: '", name, "' expected shape ",
                                                       ShapeStr(it->second.sizes()), ", found ",
                                                       ShapeStr(t.sizes())));
      }
      if (t.scalar_type() != it->second.scalar_type() && t.scalar_type() != at::kFloat) {
        return absl::InvalidArgumentError(absl::StrCat(
            "update_weights: '", name, "' expected dtype ", c10::toString(it->second.scalar_type()),
            " (or Float, cast on copy), found ", c10::toString(t.scalar_type())));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<StepOutput> Step() {
    const Clock::time_point step_start = Clock::now();
    StepOutput out;
    if (paused || !sched->HasWork()) return out;
    if (kv_released) return absl::FailedPreconditionError("step: KV cache released; call ReacquireMemory");
    if (!stale_params.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "step: weights were released and ", stale_params.size(),
          " parameters (e.g. '", *stale_params.begin(), "') were not rewritten by UpdateWeights"));
    }
    ScheduledBatch batch = sched->Schedule();
    out.num_preempted = batch.num_preempted;
    stats.preemptions += batch.num_preempted;
    if (batch.empty()) return out;
    StepPlan plan = PlanStep(batch, cfg.block_size);
    std::vector<SampleRow> rows;
    rows.reserve(plan.logits_seq.size());
    for (int32_t b : plan.logits_seq) {
      const Sequence* s = batch.seqs[b].seq;
      rows.push_back({&s->params, s->seed, s->NumOutputTokens()});
    }
    SampleResult sampled;
    const Clock::time_point run_start = Clock::now();
    try {
      at::Tensor logits = runner->Run(plan);
      c10::InferenceMode guard;
      sampled = Sample(logits, rows);  // ends with the tokens on the host: device work is done
    } catch (const c10::Error& e) {
      // The step's K/V may be half-written: drop every cached block and recompute.
      sched->PreemptAll();
      blocks->ResetPrefixCache();
      return TIDAL_INTERNAL_ERROR("engine step failed: %s", e.what_without_backtrace());
    } catch (const std::exception& e) {  // a CUDA kernel launch (rollout/cuda/kernels.h)
      sched->PreemptAll();
      blocks->ResetPrefixCache();
      return TIDAL_INTERNAL_ERROR("engine step failed: %s", e.what());
    }
    sched->Commit(batch);
    const Clock::time_point now = Clock::now();
    stats.forward_seconds += SecondsBetween(run_start, now);
    for (int32_t c : plan.context_lens) stats.context_tokens += c;
    if (plan.decode_only) {
      for (int32_t c : plan.context_lens) stats.decode_context_tokens += c;
    }
    ++stats.steps;
    stats.computed_tokens += batch.num_tokens;
    out.num_seqs = std::ssize(batch.seqs);
    for (const ScheduledSeq& s : batch.seqs) {
      (s.num_new_tokens > 1 ? out.num_prefill_tokens : out.num_decode_tokens) += s.num_new_tokens;
      if (!s.seq->scheduled_once) {
        s.seq->scheduled_once = true;
        s.seq->first_scheduled = now;
      }
    }
    for (size_t r = 0; r < rows.size(); ++r) {
      Sequence* s = batch.seqs[plan.logits_seq[r]].seq;
      const int32_t tok = sampled.tokens[r];
      if (s->logprobs.empty()) s->first_token = now;
      s->tokens.push_back(tok);
      s->logprobs.push_back(sampled.logprobs[r]);
      s->versions.push_back(version);
      ++stats.generated_tokens;
      out.tokens.push_back({s->id, tok, sampled.logprobs[r], version,
                            sampled.top.empty() ? std::vector<TopLogprob>() : std::move(sampled.top[r])});
      StopCheck stop = CheckStop(s->params, s->OutputTokens(),
                                 s->params.ignore_eos ? std::span<const int32_t>() : eos,
                                 s->NumTokens(), cfg.max_model_len, cfg.detokenize);
      if (stop.stop || stop.length) {
        s->stop_string = stop.stop_string;
        out.finished.push_back(Retire(s, stop.stop ? FinishReason::kStop : FinishReason::kLength));
      }
    }
    const double step_s = SecondsBetween(step_start, Clock::now());
    stats.step_seconds += step_s;
    if (plan.decode_only) {
      ++stats.decode_steps;
      stats.decode_tokens += plan.num_seqs;
      stats.decode_seconds += step_s;
    }
    return out;
  }
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const ModelConfig& config,
                                                       const NamedTensors& weights,
                                                       EngineConfig ec) {
  TIDAL_RETURN_IF_ERROR(config.Validate());
  if (ec.block_size < 1 || ec.max_batch_tokens < 1 || ec.max_seqs < 1 || ec.max_prefill_chunk < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: block_size, max_batch_tokens and max_seqs must be >= 1 and max_prefill_chunk >= 0 (got ",
        ec.block_size, ", ", ec.max_batch_tokens, ", ", ec.max_seqs, ", ", ec.max_prefill_chunk, ")"));
  }
  auto impl = std::make_unique<Impl>();
  impl->model = config;
  try {
    impl->device = at::Device(ec.device);
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(absl::StrCat("engine: unknown device '", ec.device, "'"));
  }
  impl->specs = ParamSpecs(config);
  for (const ParamSpec& spec : impl->specs) {
    auto it = weights.find(spec.name);
    if (it == weights.end()) {
      return absl::NotFoundError(absl::StrCat("engine: weights lack '", spec.name, "'"));
    }
    if (it->second.sizes() != at::IntArrayRef(spec.shape)) {
      return absl::InvalidArgumentError(absl::StrCat("engine: '", spec.name, "' expected shape ",
                                                     ShapeStr(spec.shape), ", found ",
                                                     ShapeStr(it->second.sizes())));
    }
  }
  if (weights.size() != impl->specs.size()) {
    for (const auto& [name, t] : weights) {
      bool known = false;
      for (const ParamSpec& s : impl->specs) known = known || s.name == name;
      if (!known) return absl::InvalidArgumentError(absl::StrCat("engine: unexpected tensor '", name, "'"));
    }
  }
  const at::ScalarType given = weights.at(impl->specs.front().name).scalar_type();
  impl->dtype = ec.dtype.value_or(given);
  if (impl->dtype != at::kFloat && impl->dtype != at::kHalf && impl->dtype != at::kBFloat16) {
    return absl::InvalidArgumentError(absl::StrCat("engine: dtype ", c10::toString(impl->dtype),
                                                   " unsupported (Float, Half or BFloat16)"));
  }
  for (const ParamSpec& spec : impl->specs) {
    const at::Tensor& src = weights.at(spec.name);
    if (src.scalar_type() != given) {
      return absl::InvalidArgumentError(absl::StrCat(
          "engine: '", spec.name, "' has dtype ", c10::toString(src.scalar_type()), ", expected ",
          c10::toString(given), " like the other weights"));
    }
    impl->weights.emplace(spec.name, src.to(impl->device, impl->dtype, /*non_blocking=*/false,
                                            /*copy=*/true)
                                         .contiguous());
  }
  // CUDA: q/k/v and gate/up back to back, one GEMM each (rollout/fused_projections.h).
  if (impl->device.is_cuda()) PackProjections(impl->weights, config.num_hidden_layers, /*copy_values=*/true);
  ec.dtype = impl->dtype;
  if (ec.max_model_len <= 0) ec.max_model_len = config.max_position_embeddings;
  const int64_t per_block = ModelRunner::KvBytesPerBlock(config, ec.block_size, impl->dtype);
  if (ec.gpu_memory_utilization > 0) {
    if (!(ec.gpu_memory_utilization < 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat("engine: gpu_memory_utilization must be in (0, 1), got ",
                                                     ec.gpu_memory_utilization));
    }
    if (!impl->device.is_cuda()) {
      return absl::InvalidArgumentError("engine: gpu_memory_utilization needs a CUDA device");
    }
    const int64_t free = ModelRunner::FreeDeviceBytes(impl->device);
    ec.num_blocks = static_cast<int64_t>(static_cast<double>(free) * ec.gpu_memory_utilization) / per_block;
  } else if (ec.num_blocks <= 0) {
    ec.num_blocks = ec.kv_cache_bytes / per_block;
  }
  if (ec.num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("engine: kv_cache_bytes ", ec.kv_cache_bytes,
                                                   " holds no KV block of ", per_block, " bytes"));
  }
  if (ec.eos_token_ids) {
    impl->eos = *ec.eos_token_ids;
  } else {
    for (int64_t id : config.eos_token_ids) impl->eos.push_back(static_cast<int32_t>(id));
  }
  impl->version = ec.initial_version;
  impl->cfg = ec;
  impl->blocks = std::make_unique<BlockManager>(ec.num_blocks, ec.block_size,
                                                ec.enable_prefix_caching);
  impl->sched = std::make_unique<Scheduler>(
      SchedulerConfig{.max_batch_tokens = ec.max_batch_tokens,
                      .max_seqs = ec.max_seqs,
                      .max_prefill_chunk = ec.max_prefill_chunk},
      impl->blocks.get());
  RunnerConfig rc{.num_blocks = ec.num_blocks,
                  .block_size = ec.block_size,
                  .max_batch_tokens = ec.max_batch_tokens,
                  .max_seqs = ec.max_seqs,
                  .max_blocks_per_seq = (ec.max_model_len + ec.block_size - 1) / ec.block_size,
                  .device = impl->device,
                  .cuda_graphs = ec.cuda_graphs,
                  .fused_layers = ec.cuda_fused_layers};
  try {
    impl->runner = std::make_unique<ModelRunner>(impl->model, &impl->weights, rc);
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("engine: cannot allocate the KV cache (",
                                                     ec.num_blocks, " blocks): ",
                                                     e.what_without_backtrace()));
  } catch (const std::exception& e) {  // CUDA graph capture (kernel launches)
    return absl::InternalError(absl::StrCat("engine: runner setup failed: ", e.what()));
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

absl::Status Engine::AddRequest(Request r) {
  Impl& m = *impl_;
  TIDAL_RETURN_IF_ERROR(m.ValidateRequest(r));
  auto s = std::make_unique<Sequence>();
  s->id = r.id;
  s->num_prompt_tokens = std::ssize(r.prompt);
  s->tokens = std::move(r.prompt);
  s->params = std::move(r.params);
  s->seed = r.seed ? *r.seed : DefaultSeed(m.request_counter);
  ++m.request_counter;
  s->arrival = Clock::now();
  m.stats.prompt_tokens += s->num_prompt_tokens;
  m.sched->Add(s.get());
  m.seqs.emplace(s->id, std::move(s));
  return absl::OkStatus();
}

absl::StatusOr<StepOutput> Engine::Step() { return impl_->Step(); }

absl::StatusOr<RequestOutput> Engine::Abort(const std::string& id) {
  auto it = impl_->seqs.find(id);
  if (it == impl_->seqs.end()) {
    return absl::NotFoundError(absl::StrCat("abort: no unfinished request '", id, "'"));
  }
  return impl_->Retire(it->second.get(), FinishReason::kAbort);
}

std::vector<RequestOutput> Engine::Pause(PauseMode mode) {
  Impl& m = *impl_;
  m.paused = true;
  std::vector<RequestOutput> out;
  if (mode == PauseMode::kAbort) {
    // Running first, then waiting, each in priority order.
    std::vector<Sequence*> all(m.sched->running().begin(), m.sched->running().end());
    all.insert(all.end(), m.sched->waiting().begin(), m.sched->waiting().end());
    for (Sequence* s : all) out.push_back(m.Retire(s, FinishReason::kAbort));
  }
  return out;
}

void Engine::Resume() { impl_->paused = false; }

absl::Status Engine::UpdateWeights(const NamedTensors& named, int64_t version) {
  Impl& m = *impl_;
  if (m.weights_released) {
    return absl::FailedPreconditionError("update_weights: weights released; call ReacquireMemory first");
  }
  TIDAL_RETURN_IF_ERROR(m.CheckUpdate(named));
  // Everything running recomputes its K/V under the new weights; cached blocks are stale.
  m.sched->PreemptAll();
  m.blocks->ResetPrefixCache();
  {
    c10::InferenceMode guard;
    for (const auto& [name, t] : named) {
      m.weights.at(name).copy_(t);
      m.stale_params.erase(name);
    }
  }
  m.version = version;
  return absl::OkStatus();
}

absl::Status Engine::UpdateWeightsFlat(const at::Tensor& flat, std::span<const ParamSpec> layout,
                                       int64_t version) {
  if (!flat.defined() || flat.dim() != 1) {
    return absl::InvalidArgumentError("update_weights_flat: buffer must be a defined 1-D tensor");
  }
  at::Tensor buf = flat.contiguous();
  NamedTensors named;
  int64_t offset = 0;
  for (const ParamSpec& spec : layout) {
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    if (offset + numel > buf.numel()) {
      return absl::InvalidArgumentError(absl::StrCat("update_weights_flat: '", spec.name,
                                                     "' ends at element ", offset + numel,
                                                     ", past the buffer's ", buf.numel()));
    }
    named.emplace(spec.name, buf.narrow(0, offset, numel).view(spec.shape));
    offset += numel;
  }
  if (offset != buf.numel()) {
    return absl::InvalidArgumentError(absl::StrCat("update_weights_flat: layout covers ", offset,
                                                   " elements, buffer has ", buf.numel()));
  }
  return UpdateWeights(named, version);
}

absl::Status Engine::ReleaseMemory(bool weights) {
  Impl& m = *impl_;
  if (!m.paused && !m.seqs.empty()) {
    return absl::FailedPreconditionError("release_memory: pause the engine first (requests in flight)");
  }
  m.sched->PreemptAll();
  m.blocks->ResetPrefixCache();
  m.runner->ReleaseKvCache();
  m.kv_released = true;
  if (weights && !m.weights_released) {
    m.runner->DropWeightViews();
    for (auto& [name, t] : m.weights) t = at::Tensor();
    m.weights_released = true;
  }
  return absl::OkStatus();
}

absl::Status Engine::ReacquireMemory() {
  Impl& m = *impl_;
  try {
    if (m.weights_released) {
      auto opts = at::TensorOptions().dtype(m.dtype).device(m.device);
      for (const ParamSpec& spec : m.specs) {
        m.weights[spec.name] = at::empty(spec.shape, opts);
        m.stale_params.insert(spec.name);
      }
      if (m.device.is_cuda()) PackProjections(m.weights, m.model.num_hidden_layers, /*copy_values=*/false);
      m.runner->RefreshWeightViews();
      m.weights_released = false;
    }
    m.runner->AllocateKvCache();
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("reacquire_memory: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("reacquire_memory: ", e.what()));
  }
  m.kv_released = false;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RequestOutput>> Engine::Generate(std::vector<Request> requests) {
  Impl& m = *impl_;
  if (m.paused) return absl::FailedPreconditionError("generate: engine is paused");
  if (!m.seqs.empty()) {
    return absl::FailedPreconditionError("generate: other requests are in flight; use Step()");
  }
  std::set<std::string> ids;
  for (const Request& r : requests) {
    TIDAL_RETURN_IF_ERROR(m.ValidateRequest(r));
    if (!ids.insert(r.id).second) {
      return absl::InvalidArgumentError(absl::StrCat("generate: duplicate request id '", r.id, "'"));
    }
  }
  std::vector<std::string> order;
  for (Request& r : requests) {
    order.push_back(r.id);
    TIDAL_RETURN_IF_ERROR(AddRequest(std::move(r)));
  }
  std::unordered_map<std::string, RequestOutput> done;
  int idle_steps = 0;  // a step may schedule nothing right after a preemption, never for long
  while (!m.seqs.empty()) {
    TIDAL_ASSIGN_OR_RETURN(StepOutput step, m.Step());
    idle_steps = step.num_seqs == 0 ? idle_steps + 1 : 0;
    if (idle_steps > 8) {
      return TIDAL_INTERNAL_ERROR("generate: %d steps scheduled nothing with %d requests left",
                                  idle_steps, static_cast<int>(m.seqs.size()));
    }
    for (RequestOutput& o : step.finished) done.emplace(o.id, std::move(o));
  }
  std::vector<RequestOutput> out;
  for (const std::string& id : order) out.push_back(std::move(done.at(id)));
  return out;
}

bool Engine::uses_cuda_kernels() const { return impl_->runner->uses_cuda_kernels(); }
bool Engine::HasUnfinished() const { return !impl_->seqs.empty(); }
int64_t Engine::NumUnfinished() const { return std::ssize(impl_->seqs); }
bool Engine::paused() const { return impl_->paused; }
int64_t Engine::version() const { return impl_->version; }
const NamedTensors& Engine::weights() const { return impl_->weights; }
const ModelConfig& Engine::model_config() const { return impl_->model; }
const EngineConfig& Engine::config() const { return impl_->cfg; }

EngineStats Engine::stats() const {
  EngineStats s = impl_->stats;
  s.prefix_queried_tokens = impl_->blocks->stats().queried_tokens;
  s.prefix_hit_tokens = impl_->blocks->stats().hit_tokens;
  s.num_blocks = impl_->blocks->num_blocks();
  s.free_blocks = impl_->blocks->NumFreeBlocks();
  return s;
}

}  // namespace tidal::rollout
