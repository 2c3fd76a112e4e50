#include "trainer/trainer.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <mutex>

#include "tests/trainer/trainer_test_util.h"

namespace tidal::trainer {
namespace {

using testing::MaxAbsDiff;
using testing::RandomBatch;
using testing::RunRanks;
using testing::TinyConfig;

void ExpectAllOk(const std::vector<absl::Status>& st) {
  for (size_t r = 0; r < st.size(); ++r) EXPECT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
}

// Rollout logprobs for `batch` computed by the reference Model on `w` (what an exact engine reports).
void FillRolloutLogprobs(const ModelConfig& c, const NamedTensors& w, std::vector<TrainSample>& batch) {
  Model m(c, w);
  for (TrainSample& s : batch) {
    std::vector<int64_t> ids(s.prompt_ids.begin(), s.prompt_ids.end());
    ids.insert(ids.end(), s.response_ids.begin(), s.response_ids.end());
    std::vector<int64_t> targets(ids.size(), 0);
    for (size_t i = 0; i + 1 < ids.size(); ++i) targets[i] = ids[i + 1];
    at::Tensor lp = m.TokenLogprobs(at::tensor(ids), at::tensor(std::vector<int64_t>{0, (int64_t)ids.size()}),
                                    at::tensor(targets));
    s.rollout_logprobs.clear();
    for (size_t j = 0; j < s.response_ids.size(); ++j) {
      s.rollout_logprobs.push_back(lp[s.prompt_ids.size() + j - 1].item<float>());
    }
    s.policy_versions.assign(s.response_ids.size(), 0);
  }
}

// The tiny model learns a fixed mapping prompt -> target by SFT: loss must fall well below start.
TEST(Trainer, ShortSftRunLowersTheLoss) {
  at::set_num_threads(1);
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 1).weights();
  std::vector<SftSample> data;
  for (int i = 0; i < 8; ++i) {
    SftSample s;
    s.prompt_ids = {1, 2 + i};
    for (int j = 0; j < 5; ++j) s.target_ids.push_back(10 + (i + j) % 30);
    data.push_back(s);
  }
  std::vector<double> losses;
  std::mutex mu;
  ExpectAllOk(RunRanks(2, [&](Communicator& comm) -> absl::Status {
    TrainerOptions o;
    o.optimizer.lr = 3e-3;
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, o, &comm));
    std::vector<SftSample> mine;
    for (size_t i = comm.rank(); i < data.size(); i += 2) mine.push_back(data[i]);
    for (int step = 0; step < 40; ++step) {
      TIDAL_ASSIGN_OR_RETURN(StepStats s, t->SftStep(mine));
      if (comm.rank() == 0) {
        std::lock_guard<std::mutex> l(mu);
        losses.push_back(s.loss);
        if (s.tokens != 40) return absl::InternalError("tokens " + std::to_string(s.tokens));
      }
    }
    return absl::OkStatus();
  }));
  ASSERT_EQ(losses.size(), 40u);
  EXPECT_NEAR(losses.front(), std::log(48.0), 0.3);  // near uniform at init
  EXPECT_LT(losses.back(), 0.3 * losses.front()) << "first " << losses.front() << " last " << losses.back();
}

// GRPO from rewards, exact rollout logprobs: no mismatch; then a perturbed rollout with MIS.
// After ResetOptimizer, a step is exactly the first step of a fresh optimizer from the same
// parameters (the policy version still counts on).
TEST(Trainer, ResetOptimizerStepsLikeAFreshOptimizer) {
  at::set_num_threads(1);
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 3).weights();
  std::vector<SftSample> warm(4), next(4);
  for (int i = 0; i < 4; ++i) {
    warm[i] = {{1, 2 + i}, {10 + i, 11 + i, 12}, {}};
    next[i] = {{3, 4 + i}, {20 + i, 21, 22 + i}, {}};
  }
  NamedTensors reset_result, fresh_result, kept_result, after_warm;
  ExpectAllOk(RunRanks(1, [&](Communicator& comm) -> absl::Status {
    TrainerOptions o;
    o.optimizer.lr = 1e-2;
    TIDAL_ASSIGN_OR_RETURN(auto a, Trainer::Create(c, init, o, &comm));
    for (int i = 0; i < 3; ++i) TIDAL_RETURN_IF_ERROR(a->SftStep(warm).status());
    TIDAL_ASSIGN_OR_RETURN(after_warm, a->FullWeights());
    TIDAL_ASSIGN_OR_RETURN(auto kept, Trainer::Create(c, init, o, &comm));
    for (int i = 0; i < 3; ++i) TIDAL_RETURN_IF_ERROR(kept->SftStep(warm).status());
    TIDAL_RETURN_IF_ERROR(kept->SftStep(next).status());
    TIDAL_ASSIGN_OR_RETURN(kept_result, kept->FullWeights());
    a->ResetOptimizer();
    TIDAL_RETURN_IF_ERROR(a->SftStep(next).status());
    EXPECT_EQ(a->step(), 4);
    TIDAL_ASSIGN_OR_RETURN(reset_result, a->FullWeights());
    TIDAL_ASSIGN_OR_RETURN(auto fresh, Trainer::Create(c, after_warm, o, &comm));
    TIDAL_RETURN_IF_ERROR(fresh->SftStep(next).status());
    TIDAL_ASSIGN_OR_RETURN(fresh_result, fresh->FullWeights());
    return absl::OkStatus();
  }));
  EXPECT_LT(MaxAbsDiff(reset_result, fresh_result), 1e-6);
  EXPECT_GT(MaxAbsDiff(kept_result, fresh_result), 1e-4);  // the kept moments do change the step
}

TEST(Trainer, RlStepReportsMismatchAndCorrections) {
  at::set_num_threads(1);
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 2).weights();
  std::vector<TrainSample> batch = RandomBatch(8, c.vocab_size, 9);
  for (auto& s : batch) s.advantage.reset();
  batch[4].reward = batch[5].reward = batch[6].reward = batch[7].reward = 1.0f;  // group 1: all equal
  batch[0].reward = 1.0f;
  batch[1].reward = 0.0f;
  FillRolloutLogprobs(c, init, batch);
  ExpectAllOk(RunRanks(1, [&](Communicator& comm) -> absl::Status {
    TrainerOptions o;
    o.optimizer.lr = 1e-3;
    o.dynamic_sampling = true;
    o.is_correction = IsCorrection::kMis;
    o.is_cap = 1.5;
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, o, &comm));
    TIDAL_ASSIGN_OR_RETURN(StepStats s, t->TrainStep(batch));
    EXPECT_EQ(s.step, 1);
    EXPECT_EQ(s.dropped_groups, 1);
    EXPECT_EQ(s.sequences, 4);
    EXPECT_LT(s.mismatch_max_abs_diff, 1e-4);
    EXPECT_LT(s.mismatch_kl, 1e-8);
    EXPECT_NEAR(s.is_weight_mean, 1.0, 1e-4);
    EXPECT_EQ(s.is_masked_fraction, 0.0);
    EXPECT_EQ(s.clip_fraction, 0.0);  // proximal ratio is 1 in a single-update step
    EXPECT_GT(s.entropy, 3.0);
    EXPECT_GT(s.grad_norm, 0.0);
    // Version 0 tokens trained at step 1 are stale; the rollout is now off by a known amount.
    std::vector<TrainSample> shifted = batch;
    for (auto& x : shifted) {
      for (size_t j = 0; j < x.rollout_logprobs.size(); j += 2) x.rollout_logprobs[j] -= 1.0f;  // ratio ~e
    }
    TIDAL_ASSIGN_OR_RETURN(StepStats s2, t->TrainStep(shifted));
    EXPECT_EQ(s2.stale_token_fraction, 1.0);
    EXPECT_NEAR(s2.mismatch_max_abs_diff, 1.0, 0.2);  // 1 plus the drift of one update
    EXPECT_GT(s2.is_masked_fraction, 0.3);
    EXPECT_LT(s2.is_masked_fraction, 0.7);
    return absl::OkStatus();
  }));
}

TEST(Trainer, RatioAgainstRolloutClips) {
  at::set_num_threads(1);
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 2).weights();
  std::vector<TrainSample> batch = RandomBatch(4, c.vocab_size, 10);
  FillRolloutLogprobs(c, init, batch);
  for (auto& x : batch) {
    for (float& v : x.rollout_logprobs) v -= 0.5f;  // ratio e^0.5 = 1.65 > 1.28
  }
  ExpectAllOk(RunRanks(1, [&](Communicator& comm) -> absl::Status {
    TrainerOptions o;
    o.ratio_against_rollout = true;
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, o, &comm));
    TIDAL_ASSIGN_OR_RETURN(StepStats s, t->TrainStep(batch));
    double positive = 0, tokens = 0;
    for (const auto& x : batch) {
      tokens += x.response_ids.size();
      if (*x.advantage > 0) positive += x.response_ids.size();
    }
    // Clipped exactly where A > 0 (ratio above 1 + 0.28); A < 0 tokens take the unclipped branch.
    EXPECT_NEAR(s.clip_fraction, positive / tokens, 1e-9);
    return absl::OkStatus();
  }));
}

// Two updates on the same samples: the second sees ratios moved by the first, and clips.
TEST(Trainer, MiniBatchesTakeSeveralUpdatesAndClip) {
  at::set_num_threads(1);
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 5).weights();
  std::vector<TrainSample> half = RandomBatch(4, c.vocab_size, 14);
  for (size_t i = 0; i < half.size(); ++i) half[i].advantage = (i % 2) ? -1.0f : 1.0f;
  std::vector<TrainSample> batch = half;
  batch.insert(batch.end(), half.begin(), half.end());
  ExpectAllOk(RunRanks(1, [&](Communicator& comm) -> absl::Status {
    TrainerOptions o;
    o.optimizer.lr = 5e-2;
    o.mini_batches = 2;
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, o, &comm));
    TIDAL_ASSIGN_OR_RETURN(StepStats s, t->TrainStep(batch));
    EXPECT_EQ(s.step, 2);
    EXPECT_EQ(s.sequences, 8);
    EXPECT_GT(s.clip_fraction, 0.1);  // only second-update tokens can clip: at most one half
    EXPECT_LE(s.clip_fraction, 0.5);
    return absl::OkStatus();
  }));
}

TEST(Trainer, KlToReferenceStartsAtZeroAndGrows) {
  at::set_num_threads(1);
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 4).weights();
  const auto batch = RandomBatch(6, c.vocab_size, 12);
  ExpectAllOk(RunRanks(2, [&](Communicator& comm) -> absl::Status {
    TrainerOptions o;
    o.optimizer.lr = 1e-2;
    o.loss.kl_coef = 0.1;
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, o, &comm));
    std::vector<TrainSample> mine;
    for (size_t i = comm.rank(); i < batch.size(); i += 2) mine.push_back(batch[i]);
    TIDAL_ASSIGN_OR_RETURN(StepStats s1, t->TrainStep(mine));
    TIDAL_ASSIGN_OR_RETURN(StepStats s2, t->TrainStep(mine));
    EXPECT_LT(std::abs(s1.kl), 1e-7);
    EXPECT_GT(s2.kl, 1e-6);
    return absl::OkStatus();
  }));
}

// A reference re-snapshotted after SFT steps is the warmed-up policy: the KL of the next RL step
// is zero again (without it, KL is measured against the initial weights).
TEST(Trainer, ReferenceSnapshotAfterSftMakesKlZeroAgain) {
  at::set_num_threads(1);
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 4).weights();
  const auto batch = RandomBatch(4, c.vocab_size, 13);
  std::vector<SftSample> sft(4);
  for (int i = 0; i < 4; ++i) sft[i] = {{1, 2 + i}, {10 + i, 11, 12 + i}, {}};
  ExpectAllOk(RunRanks(1, [&](Communicator& comm) -> absl::Status {
    TrainerOptions o;
    o.optimizer.lr = 1e-2;
    o.loss.kl_coef = 0.1;
    TIDAL_ASSIGN_OR_RETURN(auto stale, Trainer::Create(c, init, o, &comm));
    TIDAL_ASSIGN_OR_RETURN(auto fresh, Trainer::Create(c, init, o, &comm));
    for (int i = 0; i < 5; ++i) {
      TIDAL_RETURN_IF_ERROR(stale->SftStep(sft).status());
      TIDAL_RETURN_IF_ERROR(fresh->SftStep(sft).status());
    }
    fresh->SnapshotReference();
    TIDAL_ASSIGN_OR_RETURN(StepStats s_stale, stale->TrainStep(batch));
    TIDAL_ASSIGN_OR_RETURN(StepStats s_fresh, fresh->TrainStep(batch));
    EXPECT_GT(s_stale.kl, 1e-4);  // against the initial weights
    EXPECT_LT(std::abs(s_fresh.kl), 1e-7);
    return absl::OkStatus();
  }));
}

TEST(Trainer, RejectsBadSamples) {
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 2).weights();
  ExpectAllOk(RunRanks(1, [&](Communicator& comm) -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, TrainerOptions{}, &comm));
    auto batch = RandomBatch(2, c.vocab_size, 1);
    batch[1].response_ids[0] = 48;
    auto s = t->TrainStep(batch);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find("sample 1: response_ids holds token id 48"), std::string::npos) << s.status();
    batch = RandomBatch(2, c.vocab_size, 1);
    batch[0].rollout_logprobs = {0.f};
    batch[0].response_ids = {1, 2};
    EXPECT_EQ(t->TrainStep(batch).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(t->step(), 0);
    return absl::OkStatus();
  }));
}

// A NaN on one rank (here an advantage) makes every rank skip the update: weights unchanged,
// the version still advances, the skip is counted; max_nonfinite_steps in a row fail the step.
TEST(Trainer, NonFiniteStepsAreSkippedCountedAndStopAfterTheBudget) {
  const ModelConfig c = TinyConfig(true);
  const NamedTensors init = Model::RandomInit(c, 2).weights();
  ExpectAllOk(RunRanks(2, [&](Communicator& comm) -> absl::Status {
    TrainerOptions o;
    o.max_nonfinite_steps = 2;
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, o, &comm));
    auto poisoned = [&](uint32_t seed) {
      auto b = RandomBatch(4, c.vocab_size, seed + comm.rank());
      if (comm.rank() == 1) b[0].advantage = std::nanf("");
      return b;
    };
    TIDAL_ASSIGN_OR_RETURN(StepStats s1, t->TrainStep(poisoned(1)));
    EXPECT_EQ(s1.nonfinite_skipped, 1);
    EXPECT_EQ(t->step(), 1);
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w, t->FullWeights(/*all_ranks=*/true));
    EXPECT_EQ(MaxAbsDiff(w, init), 0.0) << "a skipped step must not move the weights";
    // A finite step resets the streak.
    TIDAL_ASSIGN_OR_RETURN(StepStats s2, t->TrainStep(RandomBatch(4, c.vocab_size, 7 + comm.rank())));
    EXPECT_EQ(s2.nonfinite_skipped, 0);
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w2, t->FullWeights(/*all_ranks=*/true));
    EXPECT_GT(MaxAbsDiff(w2, init), 0.0);
    // Infinite rewards (a float cannot hold 1e308) give NaN group advantages: skipped too.
    auto inf_rewards = RandomBatch(4, c.vocab_size, 9 + comm.rank());
    for (auto& smp : inf_rewards) {
      smp.advantage.reset();
      smp.reward = static_cast<float>(1e308);
    }
    inf_rewards[1].reward = 0;
    TIDAL_ASSIGN_OR_RETURN(StepStats s3, t->TrainStep(inf_rewards));
    EXPECT_EQ(s3.nonfinite_skipped, 1);
    auto s4 = t->TrainStep(poisoned(11));
    EXPECT_EQ(s4.status().code(), absl::StatusCode::kFailedPrecondition) << s4.status();
    EXPECT_NE(s4.status().message().find("2 steps in a row"), std::string::npos) << s4.status();
    EXPECT_NE(s4.status().message().find("train.max_nonfinite_steps = 2"), std::string::npos) << s4.status();
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w4, t->FullWeights(/*all_ranks=*/true));
    EXPECT_EQ(MaxAbsDiff(w4, w2), 0.0);
    return absl::OkStatus();
  }));
}

// Nothing non-finite leaves the trainer: publishing (FullWeights) and export refuse it.
TEST(Trainer, NonFiniteWeightsAreNeverPublishedOrExported) {
  const ModelConfig c = TinyConfig(false);
  NamedTensors init = Model::RandomInit(c, 2).weights();
  init.at("model.norm.weight")[3] = std::numeric_limits<float>::infinity();
  const std::string dir = std::string(TIDAL_BINARY_DIR) + "/trainer_nan_export_" + std::to_string(getpid());
  ExpectAllOk(RunRanks(1, [&](Communicator& comm) -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, TrainerOptions{}, &comm));
    auto w = t->FullWeights();
    EXPECT_EQ(w.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(w.status().message().find("model.norm.weight holds 1 of 32 values"), std::string::npos) << w.status();
    EXPECT_FALSE(t->ExportHf(dir).ok());
    EXPECT_FALSE(testing::Exists(dir + "/model.safetensors"));
    return absl::OkStatus();
  }));
  EXPECT_FALSE(Model(c, init).SaveHf(dir).ok());
  testing::RemoveTree(dir);
}

TEST(Trainer, ExportHfRoundTrips) {
  const ModelConfig c = TinyConfig(false);
  const NamedTensors init = Model::RandomInit(c, 2).weights();
  const std::string dir = std::string(TIDAL_BINARY_DIR) + "/trainer_export_" + std::to_string(getpid());
  ExpectAllOk(RunRanks(2, [&](Communicator& comm) -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(auto t, Trainer::Create(c, init, TrainerOptions{}, &comm));
    TIDAL_ASSIGN_OR_RETURN(StepStats s, t->TrainStep(RandomBatch(4, c.vocab_size, 3)));
    TIDAL_RETURN_IF_ERROR(t->ExportHf(dir));
    TIDAL_ASSIGN_OR_RETURN(NamedTensors w, t->FullWeights(/*all_ranks=*/true));
    TIDAL_ASSIGN_OR_RETURN(Model loaded, Model::LoadHf(dir));
    if (MaxAbsDiff(w, loaded.weights()) != 0.0) return absl::InternalError("export differs");
    return absl::OkStatus();
  }));
  testing::RemoveTree(dir);
}

}  // namespace
}  // namespace tidal::trainer
