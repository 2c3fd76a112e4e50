#include "trainer/trainer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/finite_check.h"
#include "trainer/checkpoint.h"
#include "trainer/packing.h"

namespace tidal::trainer {
namespace {

// Runs tensor code and turns its exceptions (TORCH_CHECK, failed collectives) into a Status.
template <typename F>
auto Guarded(const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

void CheckOk(const absl::Status& s) { TORCH_CHECK(s.ok(), s.ToString()); }

at::Tensor CpuRngState() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

// Step-wide sums exchanged with one all-reduce.
enum Sum : int {
  kLoss, kPolicyLoss, kKlSum, kEntropySum, kClipped, kTokens, kSeqs, kMismatchTokens, kMismatchKl, kIsWeight,
  kIsMasked, kStale, kVersioned, kDropped, kNumSums
};

absl::Status CheckIds(const std::vector<int32_t>& ids, int64_t vocab, size_t sample, const char* field) {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("sample ", sample, ": ", field, " holds token id ", id, " outside vocab [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status CheckPerToken(const std::vector<T>& v, size_t n, size_t sample, const char* field) {
  if (!v.empty() && v.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample ", sample, ": ", field, " has ", v.size(), " entries for ", n, " response tokens"));
  }
  return absl::OkStatus();
}

// Always a copy (never a view of `v`, which dies before the tensor may).
at::Tensor Floats(const std::vector<float>& v, at::Device d) {
  return at::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())}, at::kFloat)
      .to(d, at::kFloat, /*non_blocking=*/false, /*copy=*/true);
}

}  // namespace

class Trainer::Impl {
 public:
  Impl(ModelConfig config, TrainerOptions options, Communicator* comm, std::unique_ptr<ShardedModel> model)
      : config_(std::move(config)), options_(std::move(options)), comm_(comm), model_(std::move(model)) {}

  absl::StatusOr<StepStats> TrainStep(const std::vector<TrainSample>& batch_in) {
    const auto t0 = MonoNow();
    for (size_t i = 0; i < batch_in.size(); ++i) {
      const TrainSample& s = batch_in[i];
      if (s.prompt_ids.empty()) return absl::InvalidArgumentError(absl::StrCat("sample ", i, ": empty prompt"));
      TIDAL_RETURN_IF_ERROR(CheckIds(s.prompt_ids, config_.vocab_size, i, "prompt_ids"));
      TIDAL_RETURN_IF_ERROR(CheckIds(s.response_ids, config_.vocab_size, i, "response_ids"));
      TIDAL_RETURN_IF_ERROR(CheckPerToken(s.rollout_logprobs, s.response_ids.size(), i, "rollout_logprobs"));
      TIDAL_RETURN_IF_ERROR(CheckPerToken(s.policy_versions, s.response_ids.size(), i, "policy_versions"));
      TIDAL_RETURN_IF_ERROR(CheckPerToken(s.loss_mask, s.response_ids.size(), i, "loss_mask"));
      if (options_.ratio_against_rollout && s.rollout_logprobs.size() != s.response_ids.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("sample ", i, ": ratio_against_rollout needs rollout_logprobs for every response token"));
      }
    }
    const bool any_adv = std::any_of(batch_in.begin(), batch_in.end(), [](auto& s) { return s.advantage.has_value(); });
    const bool all_adv = std::all_of(batch_in.begin(), batch_in.end(), [](auto& s) { return s.advantage.has_value(); });
    if (any_adv && !all_adv) {
      return absl::InvalidArgumentError("either every sample carries an advantage or none does");
    }
    return CountNonfinite("TrainStep", Guarded("TrainStep", [&]() -> absl::StatusOr<StepStats> { return RunTrainStep(batch_in, all_adv, t0); }));
  }

  absl::StatusOr<StepStats> SftStep(const std::vector<SftSample>& batch) {
    const auto t0 = MonoNow();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].prompt_ids.empty()) return absl::InvalidArgumentError(absl::StrCat("sample ", i, ": empty prompt"));
      TIDAL_RETURN_IF_ERROR(CheckIds(batch[i].prompt_ids, config_.vocab_size, i, "prompt_ids"));
      TIDAL_RETURN_IF_ERROR(CheckIds(batch[i].target_ids, config_.vocab_size, i, "target_ids"));
      TIDAL_RETURN_IF_ERROR(CheckPerToken(batch[i].loss_mask, batch[i].target_ids.size(), i, "loss_mask"));
    }
    return CountNonfinite("SftStep", Guarded("SftStep", [&]() -> absl::StatusOr<StepStats> { return RunSftStep(batch, t0); }));
  }

  absl::StatusOr<NamedTensors> FullWeights(bool all_ranks) {
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w, Guarded("FullWeights", [&]() -> absl::StatusOr<NamedTensors> {
                             return model_->FullWeights(all_ranks);
                           }));
    // The last line of defence: a policy with a NaN or inf is never published or exported.
    TIDAL_RETURN_IF_ERROR(CheckAllFinite(w, absl::StrCat("the policy at step ", model_->optimizer_steps())));
    return w;
  }
  absl::StatusOr<NamedTensors> DeviceWeights(at::ScalarType dtype) {
    return Guarded("DeviceWeights", [&]() -> absl::StatusOr<NamedTensors> { return model_->DeviceWeights(dtype); });
  }
  ShardedModel& model() { return *model_; }

  absl::Status ExportHf(const std::string& dir) {
    // The raw gather (collective); SaveHf refuses non-finite weights on rank 0, after which every
    // rank still meets at the barrier.
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w, Guarded("ExportHf", [&]() -> absl::StatusOr<NamedTensors> {
                             return model_->FullWeights(false);
                           }));
    absl::Status st = absl::OkStatus();
    if (comm_->rank() == 0) st = Model(config_, std::move(w)).SaveHf(dir);
    TIDAL_RETURN_IF_ERROR(comm_->Barrier());
    return st;
  }

  absl::Status SaveCheckpoint(const std::string& dir, const std::string& loader_state) {
    return Guarded("SaveCheckpoint", [&]() -> absl::Status {
      std::vector<std::pair<std::string, at::Tensor>> tensors = model_->StateTensors();
      tensors.emplace_back("rng.cpu", CpuRngState());
      nlohmann::json meta;
      meta["step"] = model_->optimizer_steps();
      meta["adam_step"] = model_->adam_steps();
      meta["lr"] = options_.optimizer.lr;
      meta["loader_state"] = loader_state;
      meta["model"] = nlohmann::json::parse(config_.ToHfJson());
      return SaveShardedCheckpoint(dir, *comm_, tensors, meta.dump(2));
    });
  }

  absl::StatusOr<std::string> LoadCheckpoint(const std::string& dir) {
    return Guarded("LoadCheckpoint", [&]() -> absl::StatusOr<std::string> {
      std::vector<std::pair<std::string, at::Tensor>> tensors = model_->StateTensors();
      at::Tensor rng = CpuRngState();
      tensors.emplace_back("rng.cpu", rng);
      TIDAL_ASSIGN_OR_RETURN(std::string meta_text, LoadShardedCheckpoint(dir, *comm_, tensors));
      nlohmann::json meta = nlohmann::json::parse(meta_text, nullptr, /*allow_exceptions=*/false);
      if (meta.is_discarded() || !meta.contains("step")) {
        return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": meta.json is not trainer state"));
      }
      {
        at::Generator gen = at::detail::getDefaultCPUGenerator();
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(rng);
      }
      model_->set_optimizer_steps(meta["step"].get<int64_t>());
      // Checkpoints from before the optimizer could be reset counted both together.
      model_->set_adam_steps(meta.value("adam_step", meta["step"].get<int64_t>()));
      options_.optimizer.lr = meta.value("lr", options_.optimizer.lr);
      return meta.value("loader_state", std::string());
    });
  }

  void SetLearningRate(double lr) { options_.optimizer.lr = lr; }
  absl::StatusOr<TrainState> ExportState(bool all_ranks) {
    return Guarded("ExportState", [&]() -> absl::StatusOr<TrainState> {
      TrainState s = GatherTrainState(*model_, all_ranks);
      s.lr = options_.optimizer.lr;
      return s;
    });
  }
  absl::Status ImportState(const TrainState& s) {
    return Guarded("ImportState", [&]() -> absl::Status {
      TIDAL_RETURN_IF_ERROR(ScatterTrainState(s, *model_));
      if (s.lr > 0) options_.optimizer.lr = s.lr;  // the schedule's current value moves with the state
      return absl::OkStatus();
    });
  }
  int64_t step() const { return model_->optimizer_steps(); }
  void ResetOptimizer() { model_->ResetOptimizerState(); }
  void SnapshotReference() {
    if (options_.loss.kl_coef != 0.0) model_->SnapshotReference();
  }
  const ModelConfig& config() const { return config_; }
  const TrainerOptions& options() const { return options_; }

 private:
  struct Sequence {
    std::vector<uint8_t> ones;  // loss mask when the sample has none
  };

  // Sums `sums` over ranks (kSum) and the max diff (kMax); returns step-global values.
  void ReduceStats(std::vector<double>& sums, double& max_diff) {
    at::Tensor t = at::tensor(sums, at::kDouble).to(model_->options().device);
    CheckOk(comm_->AllReduce(t, ReduceOp::kSum));
    t = t.to(at::kCPU);
    for (size_t i = 0; i < sums.size(); ++i) sums[i] = t[i].item<double>();
    at::Tensor m = at::full({1}, max_diff, at::kDouble).to(model_->options().device);
    CheckOk(comm_->AllReduce(m, ReduceOp::kMax));
    max_diff = m.to(at::kCPU).item<double>();
  }

  std::vector<double> AllReduceSum(std::vector<double> v) {
    at::Tensor t = at::tensor(v, at::kDouble).to(model_->options().device);
    CheckOk(comm_->AllReduce(t, ReduceOp::kSum));
    t = t.to(at::kCPU);
    for (size_t i = 0; i < v.size(); ++i) v[i] = t[i].item<double>();
    return v;
  }

  int64_t AllReduceMax(int64_t v) {
    at::Tensor t = at::full({1}, v, at::kLong).to(model_->options().device);
    CheckOk(comm_->AllReduce(t, ReduceOp::kMax));
    return t.to(at::kCPU).item<int64_t>();
  }

  // Counts steps in a row with a skipped update; past options_.max_nonfinite_steps the step fails.
  absl::StatusOr<StepStats> CountNonfinite(const char* what, absl::StatusOr<StepStats> st) {
    if (!st.ok()) return st;
    nonfinite_streak_ = st->nonfinite_skipped > 0 ? nonfinite_streak_ + 1 : 0;
    if (options_.max_nonfinite_steps > 0 && nonfinite_streak_ >= options_.max_nonfinite_steps) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": ", nonfinite_streak_, " steps in a row had a non-finite loss or gradient and were skipped ",
          "(train.max_nonfinite_steps = ", options_.max_nonfinite_steps,
          "); the weights are those of the last finite step. Lower train.lr, check the rewards "
          "(env.reward_range) or use train.precision: fp32"));
    }
    return st;
  }

  // Clips, applies AdamW, clears the gradient; returns the pre-clip global norm. When the global
  // norm or any rank's loss is not finite, every rank skips the update (weights and moments
  // kept) but the policy version still advances; `*skipped` says so.
  double FinishStep(bool loss_finite, bool* skipped) {
    const double norm = model_->GradNorm();
    *skipped = !std::isfinite(norm) || AllReduceMax(loss_finite ? 0 : 1) != 0;
    if (*skipped) {
      model_->ZeroGrad();
      model_->set_optimizer_steps(model_->optimizer_steps() + 1);
      return norm;
    }
    if (options_.max_grad_norm > 0 && norm > options_.max_grad_norm) {
      model_->ScaleGrad(options_.max_grad_norm / (norm + 1e-6));
    }
    model_->AdamWStep(options_.optimizer);
    model_->ZeroGrad();
    return norm;
  }

  absl::StatusOr<StepStats> RunTrainStep(const std::vector<TrainSample>& batch_in, bool given_adv,
                                         MonoTime t0) {
    StepStats st;
    std::vector<double> sums(kNumSums, 0.0);
    double max_diff = 0.0;

    // DAPO dynamic sampling, then advantages per kept sample.
    std::vector<size_t> kept(batch_in.size());
    for (size_t i = 0; i < kept.size(); ++i) kept[i] = i;
    std::vector<double> rewards;
    std::vector<int64_t> groups;
    for (const TrainSample& s : batch_in) {
      rewards.push_back(s.reward);
      groups.push_back(s.group_id);
    }
    if (options_.dynamic_sampling) {
      DynamicSamplingResult ds = FilterUniformGroups(rewards, groups);
      kept = ds.kept;
      sums[kDropped] = static_cast<double>(ds.dropped_groups);
    }
    std::vector<double> adv(batch_in.size(), 0.0);
    if (given_adv) {
      for (size_t i : kept) adv[i] = *batch_in[i].advantage;
    } else {
      std::vector<double> r;
      std::vector<int64_t> g;
      for (size_t i : kept) {
        r.push_back(rewards[i]);
        g.push_back(groups[i]);
      }
      BatchMoments global;
      const bool whiten = options_.advantages.estimator == AdvantageEstimator::kReinforcePlusPlus ||
                          options_.advantages.estimator == AdvantageEstimator::kReinforcePlusPlusBaseline;
      if (whiten) {  // collective only for the estimators that need batch-wide moments
        BatchMoments local = BatchMoments::Of(PreWhitenValues(options_.advantages, r, g));
        auto v = AllReduceSum({local.sum, local.sum_sq, local.count});
        global = BatchMoments{v[0], v[1], v[2]};
      }
      std::vector<double> a = ComputeAdvantages(options_.advantages, r, g, whiten ? &global : nullptr);
      for (size_t j = 0; j < kept.size(); ++j) adv[kept[j]] = a[j];
    }

    std::vector<Sequence> seq_aux(batch_in.size());
    for (size_t i : kept) {
      if (batch_in[i].loss_mask.empty()) seq_aux[i].ones.assign(batch_in[i].response_ids.size(), 1);
    }
    const int64_t updates = options_.mini_batches;
    const int64_t version = model_->optimizer_steps();
    // Proximal logprobs for every update after the first: one forward pass before any update
    // (for the first update they equal the current logprobs).
    std::vector<std::vector<float>> old_lp;
    if (updates > 1 && !options_.ratio_against_rollout) old_lp = ForwardLogprobs(batch_in, kept);
    int64_t taken = 0;
    double grad_norm_sum = 0;
    for (int64_t u = 0; u < updates; ++u) {
      std::vector<size_t> part(kept.begin() + kept.size() * u / updates, kept.begin() + kept.size() * (u + 1) / updates);
      double grad_norm = 0;
      if (Update(batch_in, part, adv, seq_aux, old_lp, version, sums, max_diff, st, &grad_norm)) {
        ++taken;
        grad_norm_sum += grad_norm;
      }
    }
    ReduceStats(sums, max_diff);
    const double tokens = std::max(1.0, sums[kTokens]);
    st.step = model_->optimizer_steps();
    st.learning_rate = options_.optimizer.lr;
    st.grad_norm = taken ? grad_norm_sum / taken : 0.0;
    st.loss = sums[kLoss] / std::max<int64_t>(1, taken);
    st.policy_loss = sums[kPolicyLoss] / std::max<int64_t>(1, taken);
    st.kl = sums[kKlSum] / tokens;
    st.entropy = sums[kEntropySum] / tokens;
    st.clip_fraction = sums[kClipped] / tokens;
    st.mismatch_kl = sums[kMismatchTokens] > 0 ? sums[kMismatchKl] / sums[kMismatchTokens] : 0.0;
    st.mismatch_max_abs_diff = max_diff;
    st.is_weight_mean = sums[kMismatchTokens] > 0 ? sums[kIsWeight] / sums[kMismatchTokens] : 1.0;
    st.is_masked_fraction = sums[kMismatchTokens] > 0 ? sums[kIsMasked] / sums[kMismatchTokens] : 0.0;
    st.stale_token_fraction = sums[kVersioned] > 0 ? sums[kStale] / sums[kVersioned] : 0.0;
    st.tokens = static_cast<int64_t>(sums[kTokens]);
    st.sequences = static_cast<int64_t>(sums[kSeqs]);
    st.dropped_groups = static_cast<int64_t>(sums[kDropped]);
    st.seconds = SecondsSince(t0);
    return st;
  }

  // Per-sample logprobs of the response tokens under the current parameters (collective).
  std::vector<std::vector<float>> ForwardLogprobs(const std::vector<TrainSample>& batch, const std::vector<size_t>& idx) {
    std::vector<PackSequence> seqs;
    std::vector<int64_t> lengths;
    for (size_t i : idx) {
      seqs.push_back(PackSequence{&batch[i].prompt_ids, &batch[i].response_ids});
      lengths.push_back(static_cast<int64_t>(batch[i].prompt_ids.size() + batch[i].response_ids.size()));
    }
    auto plan = PlanMicroBatches(lengths, options_.micro_batch_tokens);
    const int64_t num_mb = AllReduceMax(static_cast<int64_t>(plan.size()));
    std::vector<std::vector<float>> out(batch.size());
    for (int64_t m = 0; m < num_mb; ++m) {
      if (m >= static_cast<int64_t>(plan.size())) {
        model_->Forward(PackedBatch{}, false);
        continue;
      }
      PackedMicroBatch mb = PackMicroBatch(seqs, plan[m], options_.temperature, model_->options().device);
      at::Tensor lp = model_->Forward(mb.batch, false).logprobs.to(at::kCPU).contiguous();
      const float* p = lp.data_ptr<float>();
      for (size_t j : mb.members) {
        const size_t n = batch[idx[j]].response_ids.size();
        out[idx[j]].assign(p, p + n);
        p += n;
      }
    }
    return out;
  }

  // One optimizer update on batch[part]; false (and no update) when no rank has a token to train.
  bool Update(const std::vector<TrainSample>& batch, const std::vector<size_t>& part, const std::vector<double>& adv,
              const std::vector<Sequence>& seq_aux, const std::vector<std::vector<float>>& old_lp, int64_t version,
              std::vector<double>& sums, double& max_diff, StepStats& st, double* grad_norm) {
    const at::Device dev = model_->options().device;
    std::vector<PackSequence> seqs;
    std::vector<int64_t> lengths;
    double local_tokens = 0, local_seqs = 0;
    for (size_t i : part) {
      const TrainSample& s = batch[i];
      const auto& mask = s.loss_mask.empty() ? seq_aux[i].ones : s.loss_mask;
      double n = 0;
      for (uint8_t m : mask) n += m ? 1 : 0;
      local_tokens += n;
      local_seqs += n > 0 ? 1 : 0;
      seqs.push_back(PackSequence{&s.prompt_ids, &s.response_ids});
      lengths.push_back(static_cast<int64_t>(s.prompt_ids.size() + s.response_ids.size()));
    }
    auto norm_v = AllReduceSum({local_tokens, local_seqs});
    const LossNormalizers norm{norm_v[0], norm_v[1]};
    auto plan = PlanMicroBatches(lengths, options_.micro_batch_tokens);
    const int64_t num_mb = AllReduceMax(static_cast<int64_t>(plan.size()));
    st.micro_batches = std::max(st.micro_batches, num_mb);
    // Every rank sees the same global count, so they skip together.
    if (norm.tokens <= 0) return false;

    const PolicyLossConfig& lc = options_.loss;
    const bool with_entropy = options_.compute_entropy || lc.entropy_coef != 0.0;
    bool loss_finite = true;
    for (int64_t m = 0; m < num_mb; ++m) {
      if (m >= static_cast<int64_t>(plan.size())) {
        if (lc.kl_coef != 0.0) model_->Forward(PackedBatch{}, false, /*reference=*/true);
        model_->ForwardBackward(PackedBatch{}, nullptr, with_entropy);
        continue;
      }
      PackedMicroBatch mb = PackMicroBatch(seqs, plan[m], options_.temperature, dev);
      // Per-token tensors of this micro-batch.
      std::vector<float> adv_t, mask_t, rollout_t, has_rollout_t, old_t;
      std::vector<double> seq_len;
      for (size_t j : mb.members) {
        const size_t i = part[j];
        const TrainSample& s = batch[i];
        const auto& mask = s.loss_mask.empty() ? seq_aux[i].ones : s.loss_mask;
        const bool has_ro = !s.rollout_logprobs.empty();
        if (!old_lp.empty()) old_t.insert(old_t.end(), old_lp[i].begin(), old_lp[i].end());
        double n = 0;
        for (size_t t = 0; t < s.response_ids.size(); ++t) {
          adv_t.push_back(static_cast<float>(adv[i]));
          mask_t.push_back(mask[t] ? 1.f : 0.f);
          rollout_t.push_back(has_ro ? s.rollout_logprobs[t] : 0.f);
          has_rollout_t.push_back(has_ro ? 1.f : 0.f);
          n += mask[t] ? 1 : 0;
          if (mask[t] && !s.policy_versions.empty()) {
            sums[kVersioned] += 1;
            if (s.policy_versions[t] < version) sums[kStale] += 1;
          }
        }
        seq_len.push_back(n);
      }
      const at::Tensor adv_x = Floats(adv_t, dev), mask_x = Floats(mask_t, dev), rollout_x = Floats(rollout_t, dev),
                       has_ro_x = Floats(has_rollout_t, dev);
      const at::Tensor old_x = old_lp.empty() ? at::Tensor() : Floats(old_t, dev);
      const at::Tensor seq_len_x = at::tensor(seq_len, at::kDouble).to(dev, at::kFloat);
      const at::Tensor weights =
          AggregationWeights(mask_x, mb.seq_index, seq_len_x, lc.aggregation, norm, lc.max_len);
      at::Tensor ref;
      if (lc.kl_coef != 0.0) ref = model_->Forward(mb.batch, false, /*reference=*/true).logprobs;
      const int64_t num_seqs = static_cast<int64_t>(mb.members.size());
      auto objective = [&](const at::Tensor& lp, const at::Tensor& ent) -> at::Tensor {
        // The proximal policy: pre-pass logprobs, or the current ones in a single update.
        const at::Tensor proximal = old_x.defined() ? old_x : lp.detach();
        PolicyLossInput in;
        in.logprobs = lp;
        in.old_logprobs = options_.ratio_against_rollout ? rollout_x : proximal;
        in.advantages = adv_x;
        in.mask = mask_x;
        in.seq_index = mb.seq_index;
        in.num_seqs = num_seqs;
        in.weights = weights;
        in.entropy = ent;
        in.ref_logprobs = ref;
        MismatchStats ms;
        const IsCorrection kind = options_.ratio_against_rollout ? IsCorrection::kNone : options_.is_correction;
        at::Tensor iw = ImportanceWeights(proximal, rollout_x, mask_x * has_ro_x, kind, options_.is_cap, &ms);
        if (kind != IsCorrection::kNone) in.is_weights = iw + (1.0 - has_ro_x);
        sums[kMismatchTokens] += ms.tokens;
        sums[kMismatchKl] += ms.kl_sum;
        sums[kIsWeight] += kind != IsCorrection::kNone ? ms.weight_sum : ms.tokens;
        sums[kIsMasked] += ms.masked_tokens;
        max_diff = std::max(max_diff, ms.max_abs_diff);
        PolicyLossOutput out = PolicyLoss(lc, in);
        const double loss_value = out.loss.item<double>();
        loss_finite = loss_finite && std::isfinite(loss_value);
        sums[kLoss] += loss_value;
        sums[kPolicyLoss] += out.policy_loss;
        sums[kKlSum] += out.kl_sum;
        sums[kEntropySum] += out.entropy_sum;
        sums[kClipped] += out.clipped_tokens;
        sums[kTokens] += out.tokens;
        return out.loss;
      };
      model_->ForwardBackward(mb.batch, objective, with_entropy);
      for (double n : seq_len) sums[kSeqs] += n > 0 ? 1 : 0;
    }
    bool skipped = false;
    *grad_norm = FinishStep(loss_finite, &skipped);
    if (skipped) ++st.nonfinite_skipped;
    return true;
  }

  absl::StatusOr<StepStats> RunSftStep(const std::vector<SftSample>& batch,
                                       MonoTime t0) {
    const at::Device dev = model_->options().device;
    StepStats st;
    std::vector<PackSequence> seqs;
    std::vector<int64_t> lengths;
    std::vector<std::vector<uint8_t>> masks(batch.size());
    double local_tokens = 0, local_seqs = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      masks[i] = batch[i].loss_mask.empty() ? std::vector<uint8_t>(batch[i].target_ids.size(), 1) : batch[i].loss_mask;
      double n = 0;
      for (uint8_t m : masks[i]) n += m ? 1 : 0;
      local_tokens += n;
      local_seqs += n > 0 ? 1 : 0;
      seqs.push_back(PackSequence{&batch[i].prompt_ids, &batch[i].target_ids});
      lengths.push_back(static_cast<int64_t>(batch[i].prompt_ids.size() + batch[i].target_ids.size()));
    }
    auto norm_v = AllReduceSum({local_tokens, local_seqs});
    const LossNormalizers norm{norm_v[0], norm_v[1]};
    auto plan = PlanMicroBatches(lengths, options_.micro_batch_tokens);
    const int64_t num_mb = AllReduceMax(static_cast<int64_t>(plan.size()));
    st.micro_batches = num_mb;
    std::vector<double> sums(kNumSums, 0.0);
    double max_diff = 0.0;
    if (norm.tokens <= 0) {  // no rank has a target token: no update, on every rank alike
      ReduceStats(sums, max_diff);
      st.step = model_->optimizer_steps();
      st.learning_rate = options_.optimizer.lr;
      st.seconds = SecondsSince(t0);
      return st;
    }
    bool loss_finite = true;
    for (int64_t m = 0; m < num_mb; ++m) {
      if (m >= static_cast<int64_t>(plan.size())) {
        model_->ForwardBackward(PackedBatch{}, nullptr, false);
        continue;
      }
      PackedMicroBatch mb = PackMicroBatch(seqs, plan[m], 1.0, dev);
      std::vector<float> mask_t;
      for (size_t j : mb.members) {
        for (uint8_t v : masks[j]) mask_t.push_back(v ? 1.f : 0.f);
        sums[kSeqs] += std::count(masks[j].begin(), masks[j].end(), 1) > 0 ? 1 : 0;
      }
      const at::Tensor mask_x = Floats(mask_t, dev);
      const at::Tensor weights = AggregationWeights(mask_x, mb.seq_index, at::ones({1}, mask_x.options()),
                                                    LossAggregation::kTokenMean, norm, 0);
      auto objective = [&](const at::Tensor& lp, const at::Tensor&) -> at::Tensor {
        at::Tensor loss = MaskedCrossEntropy(lp, weights);
        const double loss_value = loss.item<double>();
        loss_finite = loss_finite && std::isfinite(loss_value);
        sums[kLoss] += loss_value;
        sums[kTokens] += mask_x.sum().item<double>();
        return loss;
      };
      model_->ForwardBackward(mb.batch, objective, false);
    }
    ReduceStats(sums, max_diff);
    bool skipped = false;
    st.grad_norm = FinishStep(loss_finite, &skipped);
    st.nonfinite_skipped = skipped ? 1 : 0;
    st.step = model_->optimizer_steps();
    st.learning_rate = options_.optimizer.lr;
    st.loss = sums[kLoss];
    st.policy_loss = sums[kLoss];
    st.tokens = static_cast<int64_t>(sums[kTokens]);
    st.sequences = static_cast<int64_t>(sums[kSeqs]);
    st.is_weight_mean = 1.0;
    st.seconds = SecondsSince(t0);
    return st;
  }

  ModelConfig config_;
  TrainerOptions options_;
  Communicator* comm_;
  std::unique_ptr<ShardedModel> model_;
  int64_t nonfinite_streak_ = 0;  // steps in a row with a skipped update
};

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const ModelConfig& config, const NamedTensors& initial,
                                                         const TrainerOptions& options, Communicator* comm) {
  if (options.mini_batches < 1) {
    return absl::InvalidArgumentError(absl::StrCat("mini_batches must be >= 1, got ", options.mini_batches));
  }
  if (options.micro_batch_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("micro_batch_tokens must be positive, got ", options.micro_batch_tokens));
  }
  if (options.loss.aggregation == LossAggregation::kSeqMeanTokenSum && options.loss.max_len <= 0) {
    return absl::InvalidArgumentError("Dr.GRPO aggregation needs loss.max_len > 0");
  }
  std::unique_ptr<ShardedModel> model;
  TIDAL_RETURN_IF_ERROR(Guarded("Trainer::Create", [&]() -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(model, ShardedModel::Create(config, initial, comm, options.sharding));
    if (options.loss.kl_coef != 0.0) model->SnapshotReference();
    return absl::OkStatus();
  }));
  return std::unique_ptr<Trainer>(
      new Trainer(std::make_unique<Impl>(config, options, comm, std::move(model))));
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::CreateFromHf(const std::string& hf_dir, const TrainerOptions& options,
                                                               Communicator* comm) {
  TIDAL_ASSIGN_OR_RETURN(Model m, Model::LoadHf(hf_dir, at::kFloat));
  return Create(m.config(), m.weights(), options, comm);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::CreateFromState(const TrainState& state, const TrainerOptions& options,
                                                                  Communicator* comm) {
  if (state.empty()) return absl::InvalidArgumentError("Trainer::CreateFromState: empty state");
  NamedTensors weights = state.weights;
  if (weights.empty()) {
    // A state read from a checkpoint: shapes only, ScatterTrainState then loads the masters.
    for (const ParamSpec& spec : ParamSpecs(state.config)) weights.emplace(spec.name, at::zeros(spec.shape, at::kFloat));
  }
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> t, Create(state.config, weights, options, comm));
  TIDAL_RETURN_IF_ERROR(t->impl_->ImportState(state));
  return t;
}
absl::StatusOr<TrainState> Trainer::ExportState(bool all_ranks) { return impl_->ExportState(all_ranks); }

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

absl::StatusOr<StepStats> Trainer::TrainStep(const std::vector<TrainSample>& batch) { return impl_->TrainStep(batch); }
absl::StatusOr<StepStats> Trainer::SftStep(const std::vector<SftSample>& batch) { return impl_->SftStep(batch); }
absl::StatusOr<NamedTensors> Trainer::FullWeights(bool all_ranks) { return impl_->FullWeights(all_ranks); }
absl::Status Trainer::ExportHf(const std::string& dir) { return impl_->ExportHf(dir); }
absl::StatusOr<NamedTensors> Trainer::DeviceWeights(at::ScalarType dtype) { return impl_->DeviceWeights(dtype); }
ShardedModel::PhaseSwitch Trainer::EnterRolloutPhase(bool offload_optimizer) {
  return impl_->model().ReleaseForRollout(offload_optimizer);
}
ShardedModel::PhaseSwitch Trainer::EnterTrainPhase() { return impl_->model().ReacquireForTraining(); }
absl::Status Trainer::SaveCheckpoint(const std::string& dir, const std::string& loader_state) {
  return impl_->SaveCheckpoint(dir, loader_state);
}
absl::StatusOr<std::string> Trainer::LoadCheckpoint(const std::string& dir) { return impl_->LoadCheckpoint(dir); }
void Trainer::SetLearningRate(double lr) { impl_->SetLearningRate(lr); }
int64_t Trainer::step() const { return impl_->step(); }
void Trainer::ResetOptimizer() { impl_->ResetOptimizer(); }
void Trainer::SnapshotReference() { impl_->SnapshotReference(); }
const ModelConfig& Trainer::config() const { return impl_->config(); }
const TrainerOptions& Trainer::options() const { return impl_->options(); }

}  // namespace tidal::trainer
