#include "scheduler/rollout_role.h"

#include <chrono>
#include <map>

#include "core/logging.h"
#include "envs/environment.h"
#include "rollout/engine.h"
#include "weight_sync/weight_assembler.h"

namespace tidal::scheduler {

using SteadyClock = std::chrono::steady_clock;

class RolloutRole::Impl {
 public:
  struct Group {
    RolloutWork work;
    std::vector<std::optional<rollout::RequestOutput>> outputs;
    int pending = 0;
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
  absl::Status Start(const RolloutWork& work);
  RolloutResult Finish(Group& g);
};

RolloutRole::RolloutRole(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RolloutRole::~RolloutRole() = default;

absl::StatusOr<std::unique_ptr<RolloutRole>> RolloutRole::Create(const RolloutSettings& settings,
                                                                 const ModelConfig& config,
                                                                 std::shared_ptr<const Tokenizer> tokenizer) {
  auto impl = std::make_unique<Impl>();
  impl->settings = settings;
  impl->config = config;
  impl->tokenizer = std::move(tokenizer);
  TIDAL_ASSIGN_OR_RETURN(impl->env, envs::Environment::Open(settings.env));
  auto& ec = impl->engine_config;
  ec.block_size = settings.block_size;
  ec.num_blocks = settings.kv_blocks;
  ec.max_batch_tokens = settings.max_batch_tokens;
  ec.max_seqs = settings.max_seqs;
  ec.device = settings.device;
  ec.dtype = settings.dtype;
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
  for (int i = 0; i < n; ++i) {
    rollout::Request r;
    r.id = absl::StrCat(key, ".", work.attempt, ".", i);
    r.prompt = ids;
    if (work.greedy) {
      r.params.temperature = 0.0;
    } else {
      r.params.temperature = settings.temperature;
      r.params.top_p = settings.top_p;
      r.params.top_k = static_cast<int32_t>(settings.top_k);
      r.params.min_p = settings.min_p;
    }
    r.params.max_new_tokens = work.max_new_tokens > 0 ? work.max_new_tokens : settings.max_new_tokens;
    // Reproducible per (task, attempt, sample), independent of arrival order.
    r.seed = work.task_seed * 1000003ull + static_cast<uint64_t>(work.attempt) * 131ull + i;
    TIDAL_RETURN_IF_ERROR(engine->AddRequest(std::move(r)));
  }
  groups[key] = std::move(g);
  return absl::OkStatus();
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
      (void)m.engine->Abort(absl::StrCat(it->first, ".", it->second.work.attempt, ".", i));
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
    absl::StatusOr<envs::ScoreResult> score = env->Score(g.work.hidden, t.text);
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
  absl::StatusOr<rollout::StepOutput> step = m.engine->Step();
  if (!step.ok()) {
    if (m.openai) m.openai->FailAll(step.status(), m.engine.get());
    throw std::runtime_error(absl::StrCat("engine step: ", step.status().message()));
  }
  for (auto& o : step->finished) {
    if (m.openai && m.openai->Deliver(o)) continue;
    // Request ids are "<key>.<attempt>.<sample>".
    size_t a = o.id.find('.');
    size_t b = o.id.rfind('.');
    auto it = m.groups.find(o.id.substr(0, a));
    if (it == m.groups.end()) continue;  // aborted meanwhile
    int sample = std::atoi(o.id.c_str() + b + 1);
    Impl::Group& g = it->second;
    if (sample < 0 || sample >= static_cast<int>(g.outputs.size()) || g.outputs[sample]) continue;
    g.outputs[sample] = std::move(o);
    if (--g.pending == 0) {
      out.push_back(m.Finish(g));
      m.groups.erase(it);
    }
  }
  return out;
}

std::optional<WeightApplied> RolloutRole::OnBucket(const weight_sync::WeightBucket& bucket,
                                                   const Payload& bytes) {
  Impl& m = *impl_;
  if (bucket.version != m.assembler.version()) m.assembler.Begin(bucket.version);
  const bool was_ok = m.assembler.error().ok();
  absl::Status s = m.assembler.Add(bucket, bytes);
  if (!s.ok()) {
    if (!was_ok) return std::nullopt;  // report a poisoned version once
    return WeightApplied{bucket.version, false, std::string(s.message()), 0, version()};
  }
  if (!m.assembler.Complete()) return std::nullopt;
  absl::StatusOr<NamedTensors> w = m.assembler.Take();
  if (!w.ok()) return WeightApplied{bucket.version, false, std::string(w.status().message()), 0, version()};
  return Install(*w, bucket.version);
}

WeightApplied RolloutRole::Install(const NamedTensors& weights, int64_t version) {
  auto t0 = SteadyClock::now();
  Impl& m = *impl_;
  WeightApplied r;
  r.version = version;
  absl::Status s;
  // The engine serves model.dtype; the trainer publishes fp32 master weights.
  NamedTensors cast;
  const NamedTensors* use = &weights;
  if (m.settings.dtype != at::kFloat) {
    for (const auto& [name, t] : weights) cast[name] = t.to(m.settings.dtype);
    use = &cast;
  }
  if (!m.engine) {
    m.engine_config.initial_version = version;
    absl::StatusOr<std::unique_ptr<rollout::Engine>> e = rollout::Engine::Create(m.config, *use, m.engine_config);
    if (e.ok()) {
      m.engine = std::move(*e);
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
  r.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  return r;
}

}  // namespace tidal::scheduler
