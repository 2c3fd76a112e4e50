#include "scheduler/rollout_role.h"

#include <chrono>
#include <map>

#include "core/clock.h"
#include "core/logging.h"
#include "envs/environment.h"
#include "rollout/engine.h"
#include "scheduler/worker_metrics.h"
#include "weight_sync/weight_assembler.h"

namespace tidal::scheduler {


class RolloutRole::Impl {
 public:
  // env.multi_turn: each sample is an episode on its own environment instance. The trajectory
  // is the prompt, then every model turn (trained on) and every observation (loss mask 0:
  // the policy did not write it), in order; the next turn is generated on all of it.
  struct Episode {
    std::unique_ptr<envs::Environment> env;
    Trajectory traj;
    std::string request_id;  // the turn now in the engine
    int turns = 0;
    double reward = 0;
    std::optional<bool> correct;  // the last step's info.correct
    double queue_s = 0, e2e_s = 0;
  };
  struct Group {
    RolloutWork work;
    std::vector<std::optional<rollout::RequestOutput>> outputs;
    std::vector<Episode> episodes;  // multi-turn only
    int pending = 0;
    std::string error;  // a failed environment call: the whole group fails with it
  };

  RolloutSettings settings;
  ModelConfig config;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::unique_ptr<envs::Environment> env;
  std::unique_ptr<rollout::Engine> engine;
  rollout::EngineConfig engine_config;
  bool active = true;
  bool released = false;
  weight_sync::WeightAssembler assembler;
  std::map<std::string, Group> groups;  // key "p<id>" (training) or "e<id>" (eval)
  std::vector<RolloutWork> waiting;     // work that arrived before the first weights
  // Declared after the engine so that it stops (releasing waiting HTTP calls) before the engine
  // goes away.
  std::unique_ptr<rollout::OpenAIServer> openai;

  static std::string Key(const RolloutWork& w) {
    return absl::StrCat(w.eval ? "e" : "p", w.prompt_id);
  }
  std::vector<std::unique_ptr<envs::Environment>> idle_envs;  // multi-turn instances for reuse

  absl::Status Start(const RolloutWork& work);
  RolloutResult Finish(Group& g);
  rollout::SamplingParams ParamsFor(const RolloutWork& work) const;
  // Multi-turn: feeds a finished turn to its episode's step(); queues the next turn or ends the
  // episode (true: the sample is done).
  bool OnTurn(Group& g, int sample, rollout::RequestOutput& turn);
  RolloutResult FinishEpisodes(Group& g);
};

RolloutRole::RolloutRole(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RolloutRole::~RolloutRole() = default;

at::ScalarType EngineDtypeFor(const Recipe& r, const std::string& device) {
  return r.model.dtype == ModelDtype::kBFloat16 || device.rfind("cuda", 0) == 0 ? at::kBFloat16 : at::kFloat;
}

rollout::EngineConfig EngineConfigFromRecipe(const Recipe& r, const std::string& device) {
  rollout::EngineConfig ec;
  ec.block_size = r.rollout.block_size;
  ec.num_blocks = r.rollout.kv_blocks;
  ec.max_batch_tokens = r.rollout.max_batch_tokens;
  ec.max_seqs = r.rollout.max_seqs;
  ec.device = device;
  ec.dtype = EngineDtypeFor(r, device);
  return ec;
}

absl::StatusOr<std::unique_ptr<RolloutRole>> RolloutRole::Create(const RolloutSettings& settings,
                                                                 const ModelConfig& config,
                                                                 std::shared_ptr<const Tokenizer> tokenizer) {
  auto impl = std::make_unique<Impl>();
  impl->settings = settings;
  impl->config = config;
  impl->tokenizer = std::move(tokenizer);
  TIDAL_ASSIGN_OR_RETURN(impl->env, envs::Environment::Open(settings.env));
  auto& ec = impl->engine_config;
  ec = settings.engine;
  if (auto eos = impl->tokenizer->Specials().eos) {
    ec.eos_token_ids = impl->tokenizer->Specials().stop.empty() ? std::vector<int32_t>{*eos}
                                                                : impl->tokenizer->Specials().stop;
  }
  if (settings.openai.serve) {
    rollout::OpenAIServerOptions o;
    o.bind = settings.openai.bind;
    o.port = settings.openai.port;
    o.default_max_tokens = settings.openai.default_max_tokens;
    o.reward_low = settings.env.reward_range[0];
    o.reward_high = settings.env.reward_range[1];
    o.drive_engine = false;
    o.bearer_token = settings.openai.bearer_token;
    impl->openai = std::make_unique<rollout::OpenAIServer>(nullptr, impl->tokenizer.get(), o);
    TIDAL_RETURN_IF_ERROR(impl->openai->Start());
  }
  return std::unique_ptr<RolloutRole>(new RolloutRole(std::move(impl)));
}

std::string RolloutRole::openai_url() const {
  if (!impl_->openai) return "";
  return absl::StrCat("http://", impl_->settings.openai.bind, ":", impl_->openai->port(), "/v1");
}

std::vector<rollout::SessionTrajectory> RolloutRole::TakeSessions() {
  if (!impl_->openai) return {};
  return impl_->openai->TakeFinished();
}

int64_t RolloutRole::AgentCallsInFlight() const {
  return impl_->openai ? impl_->openai->CallsInFlight() : 0;
}

void RolloutRole::SetActive(bool active) {
  Impl& m = *impl_;
  if (active == m.active) return;
  m.active = active;
  if (!m.engine) return;
  if (!active) {
    // Unfinished requests stay inside the engine and continue on Resume (partial rollouts).
    m.engine->Pause(rollout::PauseMode::kKeep);
    if (m.settings.release_memory_when_idle) {
      absl::Status s = m.engine->ReleaseMemory(/*weights=*/false);
      if (s.ok()) m.released = true;
      else TIDAL_LOG(WARN) << "engine ReleaseMemory: " << s;
    }
  } else {
    if (m.released) {
      absl::Status s = m.engine->ReacquireMemory();
      if (!s.ok()) TIDAL_LOG(ERROR) << "engine ReacquireMemory: " << s;
      m.released = false;
    }
    m.engine->Resume();
  }
}

bool RolloutRole::active() const { return impl_->active; }

bool RolloutRole::HasWork() const {
  const Impl& m = *impl_;
  return m.active && m.engine && (m.engine->HasUnfinished() || (m.openai && m.openai->HasWaiting()));
}

int64_t RolloutRole::version() const { return impl_->engine ? impl_->engine->version() : -1; }

absl::Status RolloutRole::Impl::Start(const RolloutWork& work) {
  std::vector<int32_t> ids = tokenizer->Encode(work.prompt);
  if (ids.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt ", work.prompt_id, " encodes to no tokens"));
  }
  Group g;
  g.work = work;
  const int n = work.eval ? 1 : std::max(1, work.group_size);
  g.outputs.resize(n);
  g.pending = n;
  const std::string key = Key(work);
  if (settings.multi_turn) {
    // Each episode's instance replays the task the controller drew (same seed and split).
    const uint64_t seed = work.eval ? static_cast<uint64_t>(work.prompt_id) : work.task_seed;
    const envs::Split split = work.eval ? envs::Split::kEval : envs::Split::kTrain;
    g.episodes.resize(n);
    for (Episode& e : g.episodes) {
      if (!idle_envs.empty()) {
        e.env = std::move(idle_envs.back());
        idle_envs.pop_back();
      } else {
        TIDAL_ASSIGN_OR_RETURN(e.env, envs::Environment::Open(settings.env));
      }
      TIDAL_RETURN_IF_ERROR(e.env->Reset(seed, split).status());
      e.traj.prompt_ids = ids;
    }
  }
  for (int i = 0; i < n; ++i) {
    rollout::Request r;
    r.id = absl::StrCat(key, ".", work.attempt, ".", i);
    r.prompt = ids;
    r.params = ParamsFor(work);
    // Reproducible per (task, attempt, sample), independent of arrival order.
    r.seed = work.task_seed * 1000003ull + static_cast<uint64_t>(work.attempt) * 131ull + i;
    if (settings.multi_turn) g.episodes[i].request_id = r.id;
    TIDAL_RETURN_IF_ERROR(engine->AddRequest(std::move(r)));
  }
  groups[key] = std::move(g);
  return absl::OkStatus();
}

rollout::SamplingParams RolloutRole::Impl::ParamsFor(const RolloutWork& work) const {
  rollout::SamplingParams p;
  if (work.greedy) {
    p.temperature = 0.0;
  } else {
    p.temperature = settings.temperature;
    p.top_p = settings.top_p;
    p.top_k = static_cast<int32_t>(settings.top_k);
    p.min_p = settings.min_p;
  }
  p.max_new_tokens = work.max_new_tokens > 0 ? work.max_new_tokens : settings.max_new_tokens;
  return p;
}

bool RolloutRole::Impl::OnTurn(Group& g, int sample, rollout::RequestOutput& turn) {
  Episode& e = g.episodes[sample];
  Trajectory& t = e.traj;
  t.response_ids.insert(t.response_ids.end(), turn.tokens.begin(), turn.tokens.end());
  t.logprobs.insert(t.logprobs.end(), turn.logprobs.begin(), turn.logprobs.end());
  t.versions.insert(t.versions.end(), turn.versions.begin(), turn.versions.end());
  t.loss_mask.insert(t.loss_mask.end(), turn.tokens.size(), 1);
  t.finish_reason = std::string(rollout::FinishReasonName(turn.finish_reason));
  if (e.turns == 0) e.queue_s = turn.queue_s;
  e.e2e_s += turn.e2e_s;
  ++e.turns;
  if (!g.error.empty()) return true;
  // The plugin judges this turn's text only (the header's contract).
  absl::StatusOr<envs::StepResult> step = e.env->Step(tokenizer->Decode(turn.tokens, /*skip_special_tokens=*/true));
  if (!step.ok()) {
    g.error = std::string(step.status().message());
    return true;
  }
  e.reward += step->reward;
  if (step->info.is_object() && step->info.contains("correct") && step->info["correct"].is_boolean()) {
    e.correct = step->info["correct"].get<bool>();
  }
  const int64_t budget = config.max_position_embeddings - settings.max_new_tokens;
  if (step->done || e.turns >= settings.max_turns || turn.finish_reason == rollout::FinishReason::kAbort) return true;
  // The observation joins the context, loss-masked, with the version of the turn before it.
  const std::vector<int32_t> obs = tokenizer->Encode(step->observation);
  const int64_t version = t.versions.empty() ? 0 : t.versions.back();
  t.response_ids.insert(t.response_ids.end(), obs.begin(), obs.end());
  t.logprobs.insert(t.logprobs.end(), obs.size(), 0.0f);
  t.versions.insert(t.versions.end(), obs.size(), version);
  t.loss_mask.insert(t.loss_mask.end(), obs.size(), 0);
  if (static_cast<int64_t>(t.prompt_ids.size() + t.response_ids.size()) > budget) return true;
  rollout::Request r;
  r.id = absl::StrCat(Key(g.work), ".", g.work.attempt, ".", sample, "t", e.turns);
  r.prompt = t.prompt_ids;
  r.prompt.insert(r.prompt.end(), t.response_ids.begin(), t.response_ids.end());
  r.params = ParamsFor(g.work);
  r.seed = g.work.task_seed * 1000003ull + static_cast<uint64_t>(g.work.attempt) * 131ull + sample +
           static_cast<uint64_t>(e.turns) * 7919ull;
  e.request_id = r.id;
  absl::Status added = engine->AddRequest(std::move(r));
  if (!added.ok()) {
    g.error = std::string(added.message());
    return true;
  }
  return false;
}

RolloutResult RolloutRole::Impl::FinishEpisodes(Group& g) {
  RolloutResult r;
  r.prompt_id = g.work.prompt_id;
  r.attempt = g.work.attempt;
  r.eval = g.work.eval;
  double first_queue = 1e30, last_end = 0;
  for (Episode& e : g.episodes) {
    Trajectory t = std::move(e.traj);
    t.reward = e.reward;
    t.correct = e.correct.value_or(e.reward >= 1.0);
    t.text = tokenizer->Decode(t.response_ids, /*skip_special_tokens=*/true);
    first_queue = std::min(first_queue, e.queue_s);
    last_end = std::max(last_end, e.e2e_s);
    r.samples.push_back(std::move(t));
    if (e.env) idle_envs.push_back(std::move(e.env));
  }
  if (!g.error.empty()) {
    r.error = g.error;
    r.samples.clear();
  }
  r.queue_seconds = first_queue;
  r.generate_seconds = last_end - first_queue;
  return r;
}

absl::Status RolloutRole::Add(const RolloutWork& work) {
  if (!impl_->engine) {
    impl_->waiting.push_back(work);
    return absl::OkStatus();
  }
  return impl_->Start(work);
}

std::vector<int64_t> RolloutRole::Abort(const std::vector<int64_t>& ids) {
  Impl& m = *impl_;
  std::vector<int64_t> out;
  auto abort_group = [&](std::map<std::string, Impl::Group>::iterator it) {
    for (size_t i = 0; i < it->second.outputs.size(); ++i) {
      if (it->second.outputs[i]) continue;
      const bool episode = !it->second.episodes.empty();
      (void)m.engine->Abort(episode ? it->second.episodes[i].request_id
                                    : absl::StrCat(it->first, ".", it->second.work.attempt, ".", i));
    }
    for (auto& e : it->second.episodes) {
      if (e.env) m.idle_envs.push_back(std::move(e.env));
    }
    if (!it->second.work.eval) out.push_back(it->second.work.prompt_id);
    return m.groups.erase(it);
  };
  if (ids.empty()) {
    for (auto it = m.groups.begin(); it != m.groups.end();) it = abort_group(it);
    for (const auto& w : m.waiting) {
      if (!w.eval) out.push_back(w.prompt_id);
    }
    m.waiting.clear();
    return out;
  }
  for (int64_t id : ids) {
    auto it = m.groups.find(absl::StrCat("p", id));
    if (it != m.groups.end()) abort_group(it);
  }
  return out;
}

RolloutResult RolloutRole::Impl::Finish(Group& g) {
  RolloutResult r;
  r.prompt_id = g.work.prompt_id;
  r.attempt = g.work.attempt;
  r.eval = g.work.eval;
  double first_queue = 1e30, last_end = 0;
  for (auto& o : g.outputs) {
    Trajectory t;
    t.prompt_ids = o->prompt;
    t.response_ids = o->tokens;
    t.logprobs = o->logprobs;
    t.versions = o->versions;
    t.finish_reason = std::string(rollout::FinishReasonName(o->finish_reason));
    t.text = tokenizer->Decode(o->tokens, /*skip_special_tokens=*/true);
    first_queue = std::min(first_queue, o->queue_s);
    last_end = std::max(last_end, o->e2e_s);
    const auto score_t0 = MonoNow();
    absl::StatusOr<envs::ScoreResult> score = env->Score(g.work.hidden, t.text);
    RecordEnvCall("score", SecondsSince(score_t0), score.ok());
    if (!score.ok()) {
      r.error = std::string(score.status().message());
      r.samples.clear();
      return r;
    }
    t.reward = score->reward;
    t.correct = score->info.is_object() && score->info.contains("correct")
                    ? score->info["correct"].get<bool>()
                    : score->reward >= 1.0;
    r.samples.push_back(std::move(t));
  }
  r.queue_seconds = first_queue;
  r.generate_seconds = last_end - first_queue;
  return r;
}

std::vector<RolloutResult> RolloutRole::Step() {
  Impl& m = *impl_;
  std::vector<RolloutResult> out;
  if (!HasWork()) return out;
  if (m.openai) m.openai->Admit(*m.engine);
  const auto step_t0 = MonoNow();
  absl::StatusOr<rollout::StepOutput> step = m.engine->Step();
  if (!step.ok()) {
    if (m.openai) m.openai->FailAll(step.status(), m.engine.get());
    throw std::runtime_error(absl::StrCat("engine step: ", step.status().message()));
  }
  {
    const rollout::EngineStats st = m.engine->stats();
    EngineStepSample sample;
    sample.seconds = SecondsSince(step_t0);
    sample.running = step->num_seqs;
    sample.waiting = std::max<int64_t>(0, m.engine->NumUnfinished() - step->num_seqs);
    sample.prefill_tokens = step->num_prefill_tokens;
    sample.decode_tokens = step->num_decode_tokens;
    sample.kv_blocks_total = st.num_blocks;
    sample.kv_blocks_free = st.free_blocks;
    sample.preemptions = st.preemptions;
    sample.prefix_queried_tokens = st.prefix_queried_tokens;
    sample.prefix_hit_tokens = st.prefix_hit_tokens;
    sample.generated_tokens = st.generated_tokens;
    RecordEngineStep(sample);
  }
  if (m.openai) m.openai->Observe(*step);  // streams and stop strings of agent calls
  for (auto& o : step->finished) {
    if (m.openai && m.openai->Deliver(o)) continue;
    // Request ids are "<key>.<attempt>.<sample>".
    size_t a = o.id.find('.');
    size_t b = o.id.rfind('.');
    auto it = m.groups.find(o.id.substr(0, a));
    if (it == m.groups.end()) continue;  // aborted meanwhile
    int sample = std::atoi(o.id.c_str() + b + 1);  // multi-turn ids end "<sample>t<turn>"
    Impl::Group& g = it->second;
    if (sample < 0 || sample >= static_cast<int>(g.outputs.size()) || g.outputs[sample]) continue;
    if (!g.episodes.empty()) {
      if (g.episodes[sample].request_id != o.id) continue;
      if (!m.OnTurn(g, sample, o)) continue;  // the episode goes on
      g.outputs[sample] = rollout::RequestOutput{};  // marks the sample done
    } else {
      g.outputs[sample] = std::move(o);
    }
    if (--g.pending == 0) {
      out.push_back(g.episodes.empty() ? m.Finish(g) : m.FinishEpisodes(g));
      m.groups.erase(it);
    }
  }
  return out;
}

std::optional<WeightApplied> RolloutRole::OnBucket(const weight_sync::WeightBucket& bucket,
                                                   const Payload& bytes) {
  Impl& m = *impl_;
  RecordWeightBytes("received", static_cast<double>(bytes.size()));
  // A new version starts a fresh assembly; so does the first bucket of a resend of a version this
  // device rejected (the controller re-sends it after the rejection; without starting over, the
  // poisoned assembly would swallow the good copy and the device would never catch up).
  if (bucket.version != m.assembler.version() || (bucket.index == 0 && !m.assembler.error().ok())) {
    m.assembler.Begin(bucket.version);
  }
  const bool was_ok = m.assembler.error().ok();
  absl::Status s = m.assembler.Add(bucket, bytes);
  if (!s.ok()) {
    if (!was_ok) return std::nullopt;  // report a poisoned version once
    RecordWeightRejected();
    return WeightApplied{bucket.version, false, std::string(s.message()), 0, version()};
  }
  if (!m.assembler.Complete()) return std::nullopt;
  absl::StatusOr<NamedTensors> w = m.assembler.Take();
  if (!w.ok()) RecordWeightRejected();
  if (!w.ok()) return WeightApplied{bucket.version, false, std::string(w.status().message()), 0, version()};
  return Install(*w, bucket.version);
}

WeightApplied RolloutRole::Install(const NamedTensors& weights, int64_t version) {
  auto t0 = MonoNow();
  Impl& m = *impl_;
  WeightApplied r;
  r.version = version;
  absl::Status s;
  // The engine serves model.dtype; the trainer publishes fp32 master weights.
  NamedTensors cast;
  const NamedTensors* use = &weights;
  const at::ScalarType dtype = m.settings.engine.dtype.value_or(at::kFloat);
  if (dtype != at::kFloat) {
    for (const auto& [name, t] : weights) cast[name] = t.to(dtype);
    use = &cast;
  }
  if (!m.engine) {
    m.engine_config.initial_version = version;
    absl::StatusOr<std::unique_ptr<rollout::Engine>> e = rollout::Engine::Create(m.config, *use, m.engine_config);
    if (e.ok()) {
      m.engine = std::move(*e);
      ResetEngineBaseline();
      if (!m.active) m.engine->Pause(rollout::PauseMode::kKeep);
      std::vector<RolloutWork> waiting = std::move(m.waiting);
      m.waiting.clear();
      for (const auto& w : waiting) {
        absl::Status ws = m.Start(w);
        if (!ws.ok()) TIDAL_LOG(ERROR) << "prompt " << w.prompt_id << ": " << ws;
      }
    } else {
      s = e.status();
    }
  } else {
    // Checked before anything is written: a failed update leaves the old version serving.
    s = m.engine->UpdateWeights(*use, version);
  }
  r.ok = s.ok();
  r.error = s.ok() ? "" : std::string(s.message());
  r.serving_version = this->version();
  r.seconds = SecondsSince(t0);
  if (r.ok) {
    RecordWeightSync("apply", r.seconds);
  } else {
    RecordWeightRejected();
  }
  return r;
}

}  // namespace tidal::scheduler
