#include "scheduler/train_role.h"

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/hf_tokenizer_files.h"
#include "core/logging.h"
#include "trainer/reshard.h"
#include "trainer/trainer.h"

namespace tidal::scheduler {

using trainer::AdvantageEstimator;
using trainer::IsCorrection;
using trainer::LossAggregation;
using trainer::PolicyLossType;
using trainer::ShardedModel;
using trainer::SftSample;
using trainer::StepStats;
using trainer::Trainer;
using trainer::TrainerOptions;
using trainer::TrainSample;
using trainer::TrainState;
using trainer::TrainStateFromCheckpoint;

TrainerOptions TrainerOptionsFromRecipe(const Recipe& r, const std::string& device) {
  TrainerOptions o;
  o.optimizer.lr = r.train.lr;
  o.optimizer.beta1 = r.train.betas[0];
  o.optimizer.beta2 = r.train.betas[1];
  o.optimizer.weight_decay = r.train.weight_decay;
  o.max_grad_norm = r.train.grad_clip;
  switch (r.algo.name) {
    case AlgoName::kGspo: o.loss.type = PolicyLossType::kGspo; break;
    case AlgoName::kCispo: o.loss.type = PolicyLossType::kCispo; break;
    case AlgoName::kGrpo:
    case AlgoName::kDapo:
    case AlgoName::kRloo:
    case AlgoName::kReinforcePP: o.loss.type = PolicyLossType::kPpoClip; break;
  }
  switch (r.algo.name) {
    case AlgoName::kRloo: o.advantages.estimator = AdvantageEstimator::kRloo; break;
    case AlgoName::kReinforcePP: o.advantages.estimator = AdvantageEstimator::kReinforcePlusPlus; break;
    case AlgoName::kGrpo:
    case AlgoName::kDapo:
    case AlgoName::kGspo:
    case AlgoName::kCispo: o.advantages.estimator = AdvantageEstimator::kGrpo; break;
  }
  o.advantages.grpo_scale_by_std = r.algo.adv_std_norm;
  switch (r.algo.loss_agg) {
    case LossAgg::kTokenMean: o.loss.aggregation = LossAggregation::kTokenMean; break;
    case LossAgg::kSeqMean: o.loss.aggregation = LossAggregation::kSeqMeanTokenMean; break;
    case LossAgg::kSeqSumNorm: o.loss.aggregation = LossAggregation::kSeqMeanTokenSum; break;
  }
  o.loss.max_len = static_cast<double>(r.rollout.max_new_tokens);  // Dr.GRPO's normaliser
  o.loss.clip_low = r.algo.clip[0];
  o.loss.clip_high = r.algo.clip[1];
  o.loss.kl_coef = r.algo.kl_coef;
  o.loss.kl_estimator = r.algo.kl_estimator;
  o.loss.entropy_coef = r.algo.entropy_coef;
  o.dynamic_sampling = false;
  switch (r.algo.is_correction.type) {
    case IsCorrectionType::kNone: o.is_correction = IsCorrection::kNone; break;
    case IsCorrectionType::kTis: o.is_correction = IsCorrection::kTis; break;
    case IsCorrectionType::kMis: o.is_correction = IsCorrection::kMis; break;
  }
  o.is_cap = r.algo.is_correction.cap;
  o.temperature = r.rollout.temperature;
  o.micro_batch_tokens = r.train.micro_batch_tokens;
  o.sharding.compute_dtype = r.train.precision == Precision::kBf16 ? at::kBFloat16 : at::kFloat;
  o.sharding.reduce_dtype = r.train.reduce_dtype == Precision::kBf16 ? at::kBFloat16 : at::kFloat;
  o.sharding.device = at::Device(device);
  o.sharding.activation_checkpointing = r.train.activation_checkpointing;
  o.max_nonfinite_steps = r.train.max_nonfinite_steps;
  return o;
}


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

// The trainer's options for this device: the recipe's (TrainerOptionsFromRecipe) on `c.device`.
TrainerOptions OptionsFor(const TrainRoleConfig& c) {
  TrainerOptions o = c.trainer;
  o.sharding.device = at::Device(c.device);
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
  const TrainerOptions o = OptionsFor(c);
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
  const TrainerOptions o = OptionsFor(c);
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
  auto t0 = MonoNow();
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
  impl_->trainer->SetLearningRate(impl_->config.trainer.optimizer.lr);
  impl_->sft_since_rl = true;
  SftStepDone d;
  d.step = step.step;
  d.loss = st.loss;
  d.tokens = st.tokens;
  d.seconds = SecondsSince(t0);
  return d;
}

absl::StatusOr<TrainStepDone> TrainRole::Train(const TrainStep& step) {
  auto t0 = MonoNow();
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
  d.seconds = SecondsSince(t0);
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
