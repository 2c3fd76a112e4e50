#include "rollout/batch_scheduler.h"

#include <gtest/gtest.h>

#include <memory>
#include <numeric>

namespace tidal::rollout {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  void Init(int64_t num_blocks, int64_t block_size, SchedulerConfig cfg) {
    blocks_ = std::make_unique<BlockManager>(num_blocks, block_size);
    sched_ = std::make_unique<Scheduler>(cfg, blocks_.get());
  }
  Sequence* Add(int n, int first_token = 1) {
    auto s = std::make_unique<Sequence>();
    s->tokens.resize(n);
    std::iota(s->tokens.begin(), s->tokens.end(), first_token);
    s->num_prompt_tokens = n;
    s->id = std::to_string(seqs_.size());
    sched_->Add(s.get());
    seqs_.push_back(std::move(s));
    return seqs_.back().get();
  }
  // One engine step without a model: sampled sequences get token 1000 + step.
  ScheduledBatch Step() {
    ScheduledBatch b = sched_->Schedule();
    std::vector<Sequence*> sampled;
    for (const ScheduledSeq& s : b.seqs) {
      if (s.Samples()) sampled.push_back(s.seq);
    }
    sched_->Commit(b);
    for (Sequence* s : sampled) s->tokens.push_back(static_cast<int32_t>(1000 + b.step));
    return b;
  }
  static int64_t NewTokens(const ScheduledBatch& b, const Sequence* s) {
    for (const ScheduledSeq& x : b.seqs) {
      if (x.seq == s) return x.num_new_tokens;
    }
    return 0;
  }

  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> sched_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
};

TEST_F(SchedulerTest, FillsTokenBudgetAndChunksTheOverflow) {
  Init(64, 4, {.max_batch_tokens = 16, .max_seqs = 8});
  Sequence* a = Add(10, 1);
  Sequence* b = Add(10, 100);
  Sequence* c = Add(10, 200);
  ScheduledBatch s1 = Step();
  EXPECT_EQ(s1.num_tokens, 16);
  EXPECT_EQ(NewTokens(s1, a), 10);
  EXPECT_EQ(NewTokens(s1, b), 6);  // chunk: only what is left of the budget
  EXPECT_EQ(NewTokens(s1, c), 0);
  EXPECT_EQ(a->NumOutputTokens(), 1);
  EXPECT_EQ(b->NumOutputTokens(), 0);  // mid-prefill: no logits sampled
  ScheduledBatch s2 = Step();
  EXPECT_EQ(NewTokens(s2, a), 1);  // decode first
  EXPECT_EQ(NewTokens(s2, b), 4);  // rest of the prompt
  EXPECT_EQ(NewTokens(s2, c), 10);
  EXPECT_EQ(s2.seqs.front().seq, a);
  EXPECT_EQ(b->NumOutputTokens(), 1);
  EXPECT_EQ(c->NumOutputTokens(), 1);
  EXPECT_TRUE(sched_->waiting().empty());
}

TEST_F(SchedulerTest, LongPromptIsPrefilledInChunksAndSamplesOnceAtTheEnd) {
  Init(64, 4, {.max_batch_tokens = 16, .max_seqs = 8});
  Sequence* a = Add(40);
  std::vector<int64_t> chunks;
  while (a->NumOutputTokens() == 0) {
    ScheduledBatch b = Step();
    chunks.push_back(NewTokens(b, a));
  }
  EXPECT_EQ(chunks, (std::vector<int64_t>{16, 16, 8}));
  EXPECT_EQ(a->num_computed_tokens, 40);
  EXPECT_EQ(a->block_table.size(), 10u);
}

TEST_F(SchedulerTest, PrefillChunkCapLetsOthersInAndDecodesGoFirst) {
  Init(64, 4, {.max_batch_tokens = 16, .max_seqs = 8, .max_prefill_chunk = 8});
  Sequence* big = Add(40, 1);
  Sequence* small = Add(3, 100);
  ScheduledBatch s1 = Step();
  EXPECT_EQ(NewTokens(s1, big), 8);  // capped: the rest of the budget admits `small`
  EXPECT_EQ(NewTokens(s1, small), 3);
  ScheduledBatch s2 = Step();
  ASSERT_EQ(s2.seqs.size(), 2u);
  EXPECT_EQ(s2.seqs[0].seq, small);  // its decode goes before big's (earlier admitted) prefill
  EXPECT_EQ(NewTokens(s2, small), 1);
  EXPECT_EQ(NewTokens(s2, big), 8);
}

TEST_F(SchedulerTest, WithoutChunkCapARunningPrefillTakesTheWholeBudget) {
  Init(64, 4, {.max_batch_tokens = 16, .max_seqs = 8});
  Sequence* big = Add(40, 1);
  Sequence* small = Add(3, 100);
  EXPECT_EQ(NewTokens(Step(), big), 16);
  EXPECT_EQ(NewTokens(Step(), small), 0);  // FIFO: waits behind the running prefill
  ScheduledBatch s3 = Step();
  EXPECT_EQ(NewTokens(s3, big), 8);
  EXPECT_EQ(NewTokens(s3, small), 3);
}

TEST_F(SchedulerTest, RespectsSequenceCap) {
  Init(64, 4, {.max_batch_tokens = 100, .max_seqs = 2});
  Add(5, 1);
  Add(5, 10);
  Sequence* c = Add(5, 20);
  ScheduledBatch b = Step();
  EXPECT_EQ(b.seqs.size(), 2u);
  EXPECT_EQ(c->state, Sequence::State::kWaiting);
  sched_->Finish(seqs_[0].get());
  b = Step();
  EXPECT_EQ(NewTokens(b, c), 5);
}

TEST_F(SchedulerTest, PreemptsTheNewestByRecomputeAndResumesIt) {
  Init(4, 4, {.max_batch_tokens = 64, .max_seqs = 8});
  Sequence* a = Add(7, 1);
  Sequence* b = Add(7, 50);
  Step();  // both prefilled: 2 blocks each, pool exhausted; each now has 8 tokens
  Step();  // decode token 7 of each: still fits in 2 blocks; 9 tokens each
  ScheduledBatch s3 = Step();  // a needs a third block: b is preempted
  EXPECT_EQ(s3.num_preempted, 1);
  EXPECT_EQ(NewTokens(s3, a), 1);
  EXPECT_EQ(NewTokens(s3, b), 0);
  EXPECT_EQ(b->state, Sequence::State::kWaiting);
  EXPECT_EQ(sched_->waiting().front(), b);
  EXPECT_EQ(b->num_computed_tokens, 0);
  EXPECT_TRUE(b->block_table.empty());
  EXPECT_EQ(b->NumTokens(), 9);  // its generated tokens are kept
  EXPECT_EQ(b->num_preemptions, 1);
  sched_->Finish(a);
  ScheduledBatch s4 = Step();
  // Re-prefill of prompt + outputs. Its last freed block was evicted to give a its third
  // block; its first block is still cached, so 9 - 4 tokens are recomputed.
  EXPECT_EQ(b->state, Sequence::State::kRunning);
  EXPECT_EQ(NewTokens(s4, b), 5);
  EXPECT_EQ(b->num_cached_tokens, 4);
  EXPECT_EQ(b->NumTokens(), 10);
}

TEST_F(SchedulerTest, PreemptsLowestPriorityFirstThenItselfAndKeepsOrder) {
  Init(4, 2, {.max_batch_tokens = 64, .max_seqs = 8});
  Sequence* a = Add(3, 1);
  Sequence* b = Add(1, 10);
  Sequence* c = Add(1, 20);
  Step();  // a: 2 blocks, b: 1, c: 1; the pool is full
  EXPECT_EQ(Step().num_preempted, 0);  // every next token still fits in its block
  // a needs a third block: c (last admitted) goes. Then b needs a second block and the only
  // unscheduled running sequence left is b itself.
  ScheduledBatch s = Step();
  EXPECT_EQ(s.num_preempted, 2);
  ASSERT_EQ(s.seqs.size(), 1u);
  EXPECT_EQ(s.seqs[0].seq, a);
  ASSERT_EQ(sched_->waiting().size(), 2u);
  EXPECT_EQ(sched_->waiting()[0], b);
  EXPECT_EQ(sched_->waiting()[1], c);
  EXPECT_EQ(b->NumTokens(), 3);
  EXPECT_EQ(c->NumTokens(), 3);
}

TEST_F(SchedulerTest, PreemptAllKeepsPriorityOrder) {
  Init(64, 4, {.max_batch_tokens = 64, .max_seqs = 8});
  Sequence* a = Add(3);
  Sequence* b = Add(3);
  Step();
  Sequence* c = Add(3);
  sched_->PreemptAll();
  ASSERT_EQ(sched_->waiting().size(), 3u);
  EXPECT_EQ(sched_->waiting()[0], a);
  EXPECT_EQ(sched_->waiting()[1], b);
  EXPECT_EQ(sched_->waiting()[2], c);
  EXPECT_EQ(blocks_->NumFreeBlocks(), 64);
  EXPECT_EQ(a->NumTokens(), 4);
}

}  // namespace
}  // namespace tidal::rollout
