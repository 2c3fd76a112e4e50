// The typed path from the recipe to the trainer's and the engine's options (no names between).
#include "scheduler/train_role.h"

#include <gtest/gtest.h>

#include "scheduler/rollout_role.h"

namespace tidal::scheduler {
namespace {

using trainer::AdvantageEstimator;
using trainer::IsCorrection;
using trainer::LossAggregation;
using trainer::PolicyLossType;
using trainer::TrainerOptions;

TEST(TrainerOptionsFromRecipeTest, MapsEveryAlgorithm) {
  Recipe r = DefaultRecipe();
  struct Case {
    AlgoName algo;
    PolicyLossType loss;
    AdvantageEstimator adv;
  };
  for (const Case& c : {Case{AlgoName::kGrpo, PolicyLossType::kPpoClip, AdvantageEstimator::kGrpo},
                        Case{AlgoName::kDapo, PolicyLossType::kPpoClip, AdvantageEstimator::kGrpo},
                        Case{AlgoName::kGspo, PolicyLossType::kGspo, AdvantageEstimator::kGrpo},
                        Case{AlgoName::kCispo, PolicyLossType::kCispo, AdvantageEstimator::kGrpo},
                        Case{AlgoName::kRloo, PolicyLossType::kPpoClip, AdvantageEstimator::kRloo},
                        Case{AlgoName::kReinforcePP, PolicyLossType::kPpoClip,
                             AdvantageEstimator::kReinforcePlusPlus}}) {
    r.algo.name = c.algo;
    TrainerOptions o = TrainerOptionsFromRecipe(r, "cpu");
    EXPECT_EQ(o.loss.type, c.loss) << EnumName(c.algo);
    EXPECT_EQ(o.advantages.estimator, c.adv) << EnumName(c.algo);
  }
}

TEST(TrainerOptionsFromRecipeTest, MapsTheObjectiveAndOptimizerKeys) {
  Recipe r = DefaultRecipe();
  r.train.lr = 3e-4;
  r.train.betas = {0.8, 0.95};
  r.train.weight_decay = 0.1;
  r.train.grad_clip = 0.5;
  r.train.micro_batch_tokens = 777;
  r.train.precision = Precision::kBf16;
  r.train.reduce_dtype = Precision::kFp32;
  r.train.max_nonfinite_steps = 9;
  r.algo.clip = {0.1, 0.3};
  r.algo.kl_coef = 0.02;
  r.algo.kl_estimator = KlEstimator::kK2;
  r.algo.entropy_coef = 0.001;
  r.algo.adv_std_norm = false;
  r.algo.dynamic_sampling = true;
  r.algo.is_correction.type = IsCorrectionType::kMis;
  r.algo.is_correction.cap = 3.0;
  r.rollout.temperature = 0.7;
  r.rollout.max_new_tokens = 48;
  for (auto [agg, want] : {std::pair{LossAgg::kTokenMean, LossAggregation::kTokenMean},
                           std::pair{LossAgg::kSeqMean, LossAggregation::kSeqMeanTokenMean},
                           std::pair{LossAgg::kSeqSumNorm, LossAggregation::kSeqMeanTokenSum}}) {
    r.algo.loss_agg = agg;
    EXPECT_EQ(TrainerOptionsFromRecipe(r, "cpu").loss.aggregation, want) << EnumName(agg);
  }
  TrainerOptions o = TrainerOptionsFromRecipe(r, "cpu");
  EXPECT_DOUBLE_EQ(o.optimizer.lr, 3e-4);
  EXPECT_DOUBLE_EQ(o.optimizer.beta1, 0.8);
  EXPECT_DOUBLE_EQ(o.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(o.optimizer.weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(o.max_grad_norm, 0.5);
  EXPECT_EQ(o.micro_batch_tokens, 777);
  EXPECT_EQ(o.sharding.compute_dtype, at::kBFloat16);
  EXPECT_EQ(o.sharding.reduce_dtype, at::kFloat);
  EXPECT_EQ(o.sharding.device, at::Device("cpu"));
  EXPECT_EQ(o.max_nonfinite_steps, 9);
  EXPECT_DOUBLE_EQ(o.loss.clip_low, 0.1);
  EXPECT_DOUBLE_EQ(o.loss.clip_high, 0.3);
  EXPECT_DOUBLE_EQ(o.loss.kl_coef, 0.02);
  EXPECT_EQ(o.loss.kl_estimator, KlEstimator::kK2);
  EXPECT_DOUBLE_EQ(o.loss.entropy_coef, 0.001);
  EXPECT_DOUBLE_EQ(o.loss.max_len, 48);
  EXPECT_FALSE(o.advantages.grpo_scale_by_std);
  EXPECT_EQ(o.is_correction, IsCorrection::kMis);
  EXPECT_DOUBLE_EQ(o.is_cap, 3.0);
  EXPECT_DOUBLE_EQ(o.temperature, 0.7);
  // DAPO's filter runs in the controller's trajectory store, not again in the trainer.
  EXPECT_FALSE(o.dynamic_sampling);
}

TEST(EngineConfigFromRecipeTest, CarriesTheRolloutKeysAndTheDtypeRule) {
  Recipe r = DefaultRecipe();
  r.rollout.block_size = 32;
  r.rollout.kv_blocks = 99;
  r.rollout.max_batch_tokens = 1234;
  r.rollout.max_seqs = 17;
  r.model.dtype = ModelDtype::kFloat32;
  rollout::EngineConfig ec = EngineConfigFromRecipe(r, "cpu");
  EXPECT_EQ(ec.block_size, 32);
  EXPECT_EQ(ec.num_blocks, 99);
  EXPECT_EQ(ec.max_batch_tokens, 1234);
  EXPECT_EQ(ec.max_seqs, 17);
  EXPECT_EQ(ec.device, "cpu");
  EXPECT_EQ(ec.dtype, at::kFloat);
  EXPECT_EQ(EngineDtypeFor(r, "cuda:0"), at::kBFloat16) << "bf16 on CUDA whatever model.dtype says";
  r.model.dtype = ModelDtype::kBFloat16;
  EXPECT_EQ(EngineDtypeFor(r, "cpu"), at::kBFloat16);
}

}  // namespace
}  // namespace tidal::scheduler
