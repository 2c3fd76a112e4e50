#include "scheduler/train_role.h"

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/hf_tokenizer_files.h"
#include "core/logging.h"
#include "trainer/trainer.h"

namespace tidal::scheduler {

using SteadyClock = std::chrono::steady_clock;

class TrainRole::Impl {
 public:
  TrainRoleConfig config;
  std::shared_ptr<const Tokenizer> tokenizer;
  Communicator* comm = nullptr;  // borrowed (the worker's CommunicatorCache)
  std::unique_ptr<Trainer> trainer;
  int32_t eos = -1;
  bool sft_since_rl = false;  // SFT steps ran since the last RL step
};

TrainRole::TrainRole(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrainRole::~TrainRole() = default;

namespace {

absl::StatusOr<TrainerOptions> TrainerOptionsFrom(const TrainRoleConfig& c) {
  TrainerOptions o;
  o.optimizer.lr = c.lr;
  o.optimizer.beta1 = c.beta1;
  o.optimizer.beta2 = c.beta2;
  o.optimizer.weight_decay = c.weight_decay;
  o.max_grad_norm = c.grad_clip;
  TIDAL_ASSIGN_OR_RETURN(o.loss.type, ParsePolicyLossType(c.loss));
  o.loss.clip_low = c.clip_low;
  o.loss.clip_high = c.clip_high;
  TIDAL_ASSIGN_OR_RETURN(o.loss.aggregation, ParseLossAggregation(c.loss_agg));
  o.loss.max_len = c.max_len;
  o.loss.kl_coef = c.kl_coef;
  TIDAL_ASSIGN_OR_RETURN(o.loss.kl_estimator, ParseKlEstimator(c.kl_estimator));
  o.loss.entropy_coef = c.entropy_coef;
  TIDAL_ASSIGN_OR_RETURN(o.advantages.estimator, ParseAdvantageEstimator(c.advantage));
  o.advantages.grpo_scale_by_std = c.adv_std_norm;
  // The controller's store already drops zero-variance groups (and accounts for them).
  o.dynamic_sampling = false;
  TIDAL_ASSIGN_OR_RETURN(o.is_correction, ParseIsCorrection(c.is_correction));
  o.is_cap = c.is_cap;
  o.temperature = c.temperature;
  o.micro_batch_tokens = c.micro_batch_tokens;
  o.sharding.compute_dtype = c.bf16 ? at::kBFloat16 : at::kFloat;
  o.sharding.reduce_dtype = c.reduce_bf16 ? at::kBFloat16 : at::kFloat;
  o.sharding.device = at::Device(c.device);
  o.sharding.activation_checkpointing = c.activation_checkpointing;
  o.max_nonfinite_steps = c.max_nonfinite_steps;
  return o;
}

std::unique_ptr<TrainRole::Impl> NewImpl(const TrainRoleConfig& c, std::shared_ptr<const Tokenizer> tokenizer,
                                         Communicator* comm) {
  auto impl = std::make_unique<TrainRole::Impl>();
  impl->config = c;
  impl->tokenizer = std::move(tokenizer);
  impl->eos = impl->tokenizer->Specials().eos.value_or(-1);
  impl->comm = comm;
  return impl;
}

// World size of the sharded checkpoint in `dir` (its manifest); 0 when unreadable (the load
// itself then reports why).
int CheckpointWorldSize(const std::string& dir) {
  std::ifstream in(dir + "/manifest.json");
  nlohmann::json m = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return m.is_object() && m.contains("world_size") && m["world_size"].is_number_integer() ? m["world_size"].get<int>()
                                                                                          : 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TrainRole>> TrainRole::Create(const TrainRoleConfig& c,
                                                             std::shared_ptr<const Tokenizer> tokenizer,
                                                             Communicator* comm) {
  if (comm == nullptr) return absl::InvalidArgumentError("TrainRole: no communicator");
  if (!c.resume_dir.empty()) {
    // A checkpoint of an elastic run may come from a train group of another size than the one
    // the recipe starts with: re-shard it (every rank reads the same manifest, so all agree).
    const int saved = CheckpointWorldSize(c.resume_dir);
    if (saved > 0 && saved != comm->world_size()) {
      TIDAL_LOG(INFO) << "checkpoint " << c.resume_dir << " was saved by " << saved << " ranks; re-sharding to "
                      << comm->world_size();
      TrainRoleConfig fresh = c;
      fresh.resume_dir.clear();
      return CreateFromState(fresh, std::move(tokenizer), comm, c.resume_dir);
    }
  }
  std::unique_ptr<Impl> impl = NewImpl(c, std::move(tokenizer), comm);
  TIDAL_ASSIGN_OR_RETURN(TrainerOptions o, TrainerOptionsFrom(c));
  if (!c.model_path.empty()) {
    TIDAL_ASSIGN_OR_RETURN(impl->trainer, Trainer::CreateFromHf(c.model_path, o, comm));
  } else {
    Model init = Model::RandomInit(c.model, c.seed, at::kFloat);
    TIDAL_ASSIGN_OR_RETURN(impl->trainer, Trainer::Create(c.model, init.weights(), o, comm));
  }
  if (!c.resume_dir.empty()) {
    TIDAL_RETURN_IF_ERROR(impl->trainer->LoadCheckpoint(c.resume_dir).status());
    TIDAL_LOG(INFO) << "trainer resumed from " << c.resume_dir << " at step " << impl->trainer->step();
  }
  return std::unique_ptr<TrainRole>(new TrainRole(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<TrainRole>> TrainRole::CreateFromState(const TrainRoleConfig& c,
                                                                      std::shared_ptr<const Tokenizer> tokenizer,
                                                                      Communicator* comm,
                                                                      const std::string& state_dir) {
  if (comm == nullptr) return absl::InvalidArgumentError("TrainRole: no communicator");
  std::unique_ptr<Impl> impl = NewImpl(c, std::move(tokenizer), comm);
  TIDAL_ASSIGN_OR_RETURN(TrainerOptions o, TrainerOptionsFrom(c));
  TIDAL_ASSIGN_OR_RETURN(TrainState state, TrainStateFromCheckpoint(state_dir));
  if (state.config.vocab_size != c.model.vocab_size || state.config.hidden_size != c.model.hidden_size) {
    return absl::FailedPreconditionError(absl::StrCat("train state in ", state_dir, " is of another model"));
  }
  TIDAL_ASSIGN_OR_RETURN(impl->trainer, Trainer::CreateFromState(state, o, comm));
  TIDAL_LOG(INFO) << "trainer re-sharded from " << state.source_world << " to " << comm->world_size()
                  << " ranks (rank " << comm->rank() << ") at step " << impl->trainer->step();
  return std::unique_ptr<TrainRole>(new TrainRole(std::move(impl)));
}

int TrainRole::rank() const { return impl_->comm->rank(); }
int TrainRole::world() const { return impl_->comm->world_size(); }
int64_t TrainRole::version() const { return impl_->trainer->step(); }

absl::StatusOr<SftStepDone> TrainRole::Sft(const SftStep& step) {
  auto t0 = SteadyClock::now();
  std::vector<SftSample> batch;
  for (const auto& e : step.examples) {
    SftSample s;
    s.prompt_ids = impl_->tokenizer->Encode(e.prompt);
    s.target_ids = impl_->tokenizer->Encode(e.target);
    // The policy must learn to stop: the target ends with the end-of-sequence token.
    if (impl_->eos >= 0) s.target_ids.push_back(impl_->eos);
    batch.push_back(std::move(s));
  }
  impl_->trainer->SetLearningRate(step.lr);
  TIDAL_ASSIGN_OR_RETURN(StepStats st, impl_->trainer->SftStep(batch));
  impl_->trainer->SetLearningRate(impl_->config.lr);
  impl_->sft_since_rl = true;
  SftStepDone d;
  d.step = step.step;
  d.loss = st.loss;
  d.tokens = st.tokens;
  d.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  return d;
}

absl::StatusOr<TrainStepDone> TrainRole::Train(const TrainStep& step) {
  auto t0 = SteadyClock::now();
  std::vector<TrainSample> batch;
  for (const auto& g : step.groups) {
    for (const auto& t : g.samples) {
      if (t.response_ids.empty()) continue;  // nothing to train on (the group keeps its others)
      TrainSample s;
      s.prompt_ids = t.prompt_ids;
      s.response_ids = t.response_ids;
      s.rollout_logprobs = t.logprobs;
      s.policy_versions = t.versions;
      s.loss_mask = t.loss_mask;
      s.reward = static_cast<float>(t.reward);
      s.group_id = g.prompt_id;
      batch.push_back(std::move(s));
    }
  }
  if (impl_->sft_since_rl) {
    // RL's KL term anchors to the policy the warm-up produced, not to the initial weights.
    impl_->trainer->SnapshotReference();
    if (impl_->config.reset_optimizer_after_sft) impl_->trainer->ResetOptimizer();
  }
  impl_->sft_since_rl = false;
  TIDAL_ASSIGN_OR_RETURN(StepStats st, impl_->trainer->TrainStep(batch));
  TrainStepDone d;
  d.step = step.step;
  d.version = impl_->trainer->step();
  d.tokens = st.tokens;
  d.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  for (const auto& [name, value] : st.Metrics()) {
    std::string key = name.rfind("train/", 0) == 0 ? name.substr(6) : name;
    d.stats[key] = value;
  }
  return d;
}

absl::StatusOr<NamedTensors> TrainRole::FullWeights(bool all_ranks) {
  return impl_->trainer->FullWeights(all_ranks);
}

absl::StatusOr<NamedTensors> TrainRole::DeviceWeights(at::ScalarType dtype) {
  return impl_->trainer->DeviceWeights(dtype);
}

namespace {
PhaseSwitchStats ToStats(const ShardedModel::PhaseSwitch& p) {
  return PhaseSwitchStats{p.seconds, p.bytes_freed, p.bytes_offloaded};
}
}  // namespace

PhaseSwitchStats TrainRole::EnterRolloutPhase() {
  return ToStats(impl_->trainer->EnterRolloutPhase(impl_->config.offload_optimizer));
}

PhaseSwitchStats TrainRole::EnterTrainPhase() { return ToStats(impl_->trainer->EnterTrainPhase()); }

const std::string& TrainRole::device() const { return impl_->config.device; }

absl::Status TrainRole::SaveCheckpoint(const std::string& dir) { return impl_->trainer->SaveCheckpoint(dir); }

absl::Status TrainRole::ExportHf(const std::string& dir) {
  TIDAL_RETURN_IF_ERROR(impl_->trainer->ExportHf(dir));
  if (impl_->comm->rank() != 0) return absl::OkStatus();
  // The tokenizer, its chat template and the generation settings travel with the weights, so the
  // directory loads in transformers (and `tidal generate`) on its own.
  HfTokenizerSource source{.tokenizer_spec = impl_->config.tokenizer_spec,
                           .model_path = impl_->config.model_path,
                           .max_positions = impl_->config.model.max_position_embeddings};
  return WriteHfTokenizerFiles(dir, source, *impl_->tokenizer);
}

}  // namespace tidal::scheduler
