// Elastic train group: train on 2 ranks, grow to 3, shrink to 1 (state re-partitioned at step
// boundaries through GatherTrainState/ScatterTrainState) and compare with a fixed 2-rank run.
#include "trainer/reshard.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <mutex>

#include "absl/strings/match.h"

#include "tests/trainer/trainer_test_util.h"
#include "trainer/trainer.h"

namespace tidal::trainer {
namespace {

using testing::MaxAbsDiff;
using testing::RandomBatch;
using testing::RunRanks;
using testing::TinyConfig;

constexpr double kLr = 1e-2;

TrainerOptions Options(bool kl) {
  TrainerOptions o;
  o.optimizer.lr = kLr;
  o.optimizer.weight_decay = 0.1;
  o.max_grad_norm = 0.5;
  o.micro_batch_tokens = 24;
  if (kl) o.loss.kl_coef = 0.05;  // exercises the reference flats
  return o;
}

std::vector<TrainSample> Mine(const std::vector<TrainSample>& batch, const Communicator& comm) {
  std::vector<TrainSample> out;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (static_cast<int>(i % comm.world_size()) == comm.rank()) out.push_back(batch[i]);
  }
  return out;
}

struct Phase {
  int world;
  int steps;
};

// Runs the phases in order; between phases the old group hands its state to the new group (a
// fresh communicator of the new size): gathered in memory, or through a sharded checkpoint read
// whole (the cross-process path). Returns the final state.
TrainState ElasticTrain(const ModelConfig& c, const NamedTensors& init, const std::vector<Phase>& phases,
                        const TrainerOptions& o, const std::vector<std::vector<TrainSample>>& batches,
                        bool via_checkpoint = false) {
  TrainState carried;
  size_t next = 0;
  const std::string root = "/tmp/" + testing::UniqueGroup("reshard");
  for (size_t p = 0; p < phases.size(); ++p) {
    TrainState gathered;
    std::mutex mu;
    auto st = RunRanks(phases[p].world, [&](Communicator& comm) -> absl::Status {
      std::unique_ptr<Trainer> t;
      if (p == 0) {
        TIDAL_ASSIGN_OR_RETURN(t, Trainer::Create(c, init, o, &comm));
      } else {
        TIDAL_ASSIGN_OR_RETURN(t, Trainer::CreateFromState(carried, o, &comm));
      }
      for (int s = 0; s < phases[p].steps; ++s) {
        TIDAL_RETURN_IF_ERROR(t->TrainStep(Mine(batches[next + s], comm)).status());
      }
      if (via_checkpoint) return t->SaveCheckpoint(root + "/phase" + std::to_string(p));
      // Only rank 0 keeps the state: the hand-off must not depend on the other ranks' copies.
      TIDAL_ASSIGN_OR_RETURN(TrainState state, t->ExportState(/*all_ranks=*/false));
      if (comm.rank() != 0 && !state.empty()) return absl::InternalError("state on a rank other than 0");
      if (comm.rank() == 0) {
        std::lock_guard<std::mutex> l(mu);
        gathered = std::move(state);
      }
      return absl::OkStatus();
    });
    for (size_t r = 0; r < st.size(); ++r) EXPECT_TRUE(st[r].ok()) << "phase " << p << " rank " << r << ": " << st[r];
    next += phases[p].steps;
    if (via_checkpoint) {
      auto read = TrainStateFromCheckpoint(root + "/phase" + std::to_string(p));
      EXPECT_TRUE(read.ok()) << read.status();
      if (!read.ok()) break;
      EXPECT_EQ(read->source_world, phases[p].world);
      gathered = std::move(*read);
    }
    carried = std::move(gathered);
  }
  testing::RemoveTree(root);
  return carried;
}

// Max |a - b| over every state flat (masters, moments, reference) on the unpadded prefix; the
// padding (which differs by world size) must be zero.
double MaxStateDiff(const TrainState& a, const TrainState& b) {
  EXPECT_EQ(a.flats.size(), b.flats.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.flats.size(), b.flats.size()); ++i) {
    EXPECT_EQ(a.flats[i].first, b.flats[i].first);
    const at::Tensor& x = a.flats[i].second;
    const at::Tensor& y = b.flats[i].second;
    const int64_t n = std::min(x.numel(), y.numel());
    m = std::max(m, (x.narrow(0, 0, n) - y.narrow(0, 0, n)).abs().max().item<double>());
    EXPECT_EQ(x.narrow(0, n, x.numel() - n).abs().sum().item<double>(), 0.0) << a.flats[i].first << " padding";
    EXPECT_EQ(y.narrow(0, n, y.numel() - n).abs().sum().item<double>(), 0.0) << b.flats[i].first << " padding";
  }
  return m;
}

class ReshardTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

// Tolerance as the N=1,2,4 sharding tests (tests/trainer/sharded_model_test.cpp): 1e-4 after
// several AdamW steps at lr 1e-2 (summation order differs with the world size).
TEST_P(ReshardTest, GrowThenShrinkMatchesFixedGroup) {
  const bool kl = GetParam();
  const ModelConfig c = TinyConfig(/*tied=*/true);
  const NamedTensors init = Model::RandomInit(c, 17).weights();
  std::vector<std::vector<TrainSample>> batches;
  for (int s = 0; s < 6; ++s) batches.push_back(RandomBatch(9, c.vocab_size, 300 + s));
  const TrainerOptions o = Options(kl);
  const TrainState fixed = ElasticTrain(c, init, {{2, 6}}, o, batches);
  const TrainState elastic = ElasticTrain(c, init, {{2, 2}, {3, 2}, {1, 2}}, o, batches);
  ASSERT_FALSE(fixed.empty());
  ASSERT_FALSE(elastic.empty());
  EXPECT_GT(MaxAbsDiff(fixed.weights, init), 1e-3);  // training moved the weights
  const double diff = MaxAbsDiff(elastic.weights, fixed.weights);
  std::printf("kl %d: max |elastic 2->3->1 - fixed 2| weights %.3g, state %.3g\n", kl, diff,
              MaxStateDiff(elastic, fixed));
  EXPECT_LE(diff, 1e-4);
  // The moments survived the moves too, not only the weights.
  EXPECT_LE(MaxStateDiff(elastic, fixed), 1e-4);
  EXPECT_EQ(elastic.optimizer_steps, 6);
  EXPECT_EQ(elastic.adam_steps, 6);
  EXPECT_EQ(elastic.source_world, 1);
  bool saw_reference = false;
  for (const auto& f : elastic.flats) saw_reference |= absl::EndsWith(f.first, ".reference");
  EXPECT_EQ(saw_reference, kl);
}

// The cross-process hand-off: each group saves a sharded checkpoint, the next (another size)
// reads it whole. Same trajectory as the in-memory path.
TEST_P(ReshardTest, CheckpointHandOffMatchesInMemory) {
  const bool kl = GetParam();
  const ModelConfig c = TinyConfig(/*tied=*/false);
  const NamedTensors init = Model::RandomInit(c, 19).weights();
  std::vector<std::vector<TrainSample>> batches;
  for (int s = 0; s < 6; ++s) batches.push_back(RandomBatch(7, c.vocab_size, 400 + s));
  const TrainerOptions o = Options(kl);
  const TrainState memory = ElasticTrain(c, init, {{2, 2}, {3, 2}, {1, 2}}, o, batches);
  const TrainState disk = ElasticTrain(c, init, {{2, 2}, {3, 2}, {1, 2}}, o, batches, /*via_checkpoint=*/true);
  ASSERT_FALSE(disk.empty());
  EXPECT_TRUE(disk.weights.empty());  // the masters are the weights
  EXPECT_EQ(disk.optimizer_steps, 6);
  EXPECT_DOUBLE_EQ(disk.lr, kLr);
  // Same ranks, same order of operations: bit-identical.
  EXPECT_EQ(MaxStateDiff(disk, memory), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Kl, ReshardTest, ::testing::Bool());

TEST(ReshardTest, ScatterRejectsAnEmptyState) {
  const ModelConfig c = TinyConfig(false);
  auto st = RunRanks(1, [&](Communicator& comm) -> absl::Status {
    TIDAL_ASSIGN_OR_RETURN(auto m, ShardedModel::Create(c, Model::RandomInit(c, 1).weights(), &comm, {}));
    absl::Status s = ScatterTrainState(TrainState{}, *m);
    if (s.ok() || s.message().find("empty") == std::string::npos) return absl::InternalError("accepted empty state");
    return absl::OkStatus();
  });
  EXPECT_TRUE(st[0].ok()) << st[0];
}

TEST(CommunicatorCacheTest, OneCommunicatorPerMembership) {
  int created = 0;
  const std::string prefix = testing::UniqueGroup("cc");
  CommunicatorCache cache([&](const std::string& group, const std::vector<int>& members, int rank,
                              const std::string&) -> absl::StatusOr<std::unique_ptr<Communicator>> {
    ++created;
    ShmCommunicatorOptions o;
    o.group = group;
    o.rank = rank;
    o.world_size = static_cast<int>(members.size());
    o.timeout = absl::Seconds(10);
    TIDAL_ASSIGN_OR_RETURN(auto comm, ShmCommunicator::Create(o));
    return std::unique_ptr<Communicator>(std::move(comm));
  });
  const std::string g2 = CommunicatorCache::GroupName(prefix, {2});
  bool made = false;
  auto a = cache.Get(g2, {2}, 2, "", &made);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(made);
  EXPECT_EQ((*a)->rank(), 0);
  EXPECT_EQ((*a)->world_size(), 1);
  auto again = cache.Get(g2, {2}, 2, "", &made);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(made);
  EXPECT_EQ(*again, *a);  // cached
  EXPECT_EQ(created, 1);
  EXPECT_FALSE(cache.Get("x", {0, 1}, 2).ok());     // not a member
  EXPECT_FALSE(cache.Get("x", {1, 2, 1}, 2).ok());  // duplicate
  EXPECT_FALSE(cache.Get(g2, {2, 3}, 2).ok());      // the name is taken by another membership
  EXPECT_EQ(created, 1);
  // A fresh name for the same members (a member restarted): a new communicator.
  auto fresh = cache.Get(g2 + ".r1", {2}, 2);
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(*fresh, *a);
  EXPECT_EQ(created, 2);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(CommunicatorCache::GroupName("g", {0, 3}), "g.m0_3");
}

}  // namespace
}  // namespace tidal::trainer
