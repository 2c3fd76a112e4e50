#include "rollout/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>

namespace tidal::rollout {
namespace {

Sequence MakeSeq(std::vector<int32_t> tokens) {
  Sequence s;
  s.num_prompt_tokens = std::ssize(tokens);
  s.tokens = std::move(tokens);
  return s;
}

std::vector<int32_t> Iota(int n, int start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Admits and appends every token, as the scheduler does for a prompt that fits in one step.
void AdmitAll(BlockManager& bm, Sequence& s) {
  auto matched = bm.MatchPrefix(s);
  ASSERT_TRUE(bm.CanAdmit(matched, s.NumTokens()));
  bm.Admit(s, matched);
  bm.Append(s, s.NumTokens() - s.num_computed_tokens);
  s.num_computed_tokens = s.NumTokens();
}

TEST(BlockManager, AllocatesAndFreesBlocks) {
  BlockManager bm(8, 4);
  Sequence s = MakeSeq(Iota(10));
  AdmitAll(bm, s);
  EXPECT_EQ(s.block_table.size(), 3u);
  EXPECT_EQ(bm.NumFreeBlocks(), 5);
  for (int32_t b : s.block_table) EXPECT_EQ(bm.RefCount(b), 1);
  // Two full blocks are registered; the partial third is not.
  EXPECT_TRUE(bm.IsCached(s.block_table[0]));
  EXPECT_TRUE(bm.IsCached(s.block_table[1]));
  EXPECT_FALSE(bm.IsCached(s.block_table[2]));
  bm.Free(s);
  EXPECT_EQ(bm.NumFreeBlocks(), 8);
  EXPECT_TRUE(s.block_table.empty());
  EXPECT_EQ(s.num_computed_tokens, 0);
}

TEST(BlockManager, GroupSharesPromptBlocksAndRefCounts) {
  BlockManager bm(16, 4);
  std::vector<Sequence> group;
  for (int i = 0; i < 4; ++i) group.push_back(MakeSeq(Iota(13)));  // 3 full blocks + 1 token
  for (Sequence& s : group) AdmitAll(bm, s);
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(group[i].num_cached_tokens, 12);
    for (int j = 0; j < 3; ++j) EXPECT_EQ(group[i].block_table[j], group[0].block_table[j]);
    EXPECT_NE(group[i].block_table[3], group[0].block_table[3]);  // own partial block
  }
  for (int j = 0; j < 3; ++j) EXPECT_EQ(bm.RefCount(group[0].block_table[j]), 4);
  EXPECT_EQ(bm.NumFreeBlocks(), 16 - 3 - 4);
  EXPECT_EQ(bm.stats().hit_tokens, 36);
  EXPECT_EQ(bm.stats().queried_tokens, 52);
  for (int i = 0; i < 3; ++i) bm.Free(group[i]);
  EXPECT_EQ(bm.RefCount(group[3].block_table[0]), 1);
  bm.Free(group[3]);
  EXPECT_EQ(bm.NumFreeBlocks(), 16);
}

TEST(BlockManager, WholePromptHitStillLeavesLastTokenToCompute) {
  BlockManager bm(8, 4);
  Sequence a = MakeSeq(Iota(8)), b = MakeSeq(Iota(8));
  AdmitAll(bm, a);
  auto matched = bm.MatchPrefix(b);
  EXPECT_EQ(matched.size(), 1u);  // (8 - 1) / 4 blocks: the last block is recomputed
}

TEST(BlockManager, FreedCachedBlocksAreReusedByLaterRequests) {
  BlockManager bm(8, 4);
  Sequence a = MakeSeq(Iota(9));
  AdmitAll(bm, a);
  std::vector<int32_t> a_blocks = a.block_table;
  bm.Free(a);
  Sequence b = MakeSeq(Iota(9));
  auto matched = bm.MatchPrefix(b);
  ASSERT_EQ(matched.size(), 2u);
  EXPECT_EQ(matched[0], a_blocks[0]);
  EXPECT_EQ(matched[1], a_blocks[1]);
  EXPECT_TRUE(bm.CanAdmit(matched, 9));
  bm.Admit(b, matched);
  EXPECT_EQ(b.num_computed_tokens, 8);
  EXPECT_EQ(bm.RefCount(a_blocks[0]), 1);
}

TEST(BlockManager, EvictsLeastRecentlyUsedCachedBlocksWhenShort) {
  BlockManager bm(4, 2);
  Sequence a = MakeSeq({1, 2, 3, 4, 5});  // blocks [1 2] [3 4] [5]
  AdmitAll(bm, a);
  bm.Free(a);
  EXPECT_EQ(bm.NumFreeBlocks(), 4);  // cached blocks count as free
  Sequence probe = MakeSeq({1, 2, 3, 4, 5});
  EXPECT_EQ(bm.MatchPrefix(probe).size(), 2u);
  // A different prompt grows block by block: the two uncached blocks go first, then cached
  // ones are evicted, the tail [3 4] before the prefix [1 2].
  Sequence b = MakeSeq({9, 9, 8, 8, 7, 7, 6});
  EXPECT_TRUE(bm.MatchPrefix(b).empty());
  bm.Admit(b, {});
  bm.Append(b, 4);
  b.num_computed_tokens = 4;
  EXPECT_EQ(bm.stats().evictions, 0);
  EXPECT_EQ(bm.MatchPrefix(probe).size(), 2u);
  bm.Append(b, 2);
  b.num_computed_tokens = 6;
  EXPECT_EQ(bm.stats().evictions, 1);
  EXPECT_EQ(bm.MatchPrefix(probe).size(), 1u);  // [1 2] survives, [3 4] evicted
  bm.Append(b, 1);
  b.num_computed_tokens = 7;
  EXPECT_EQ(bm.stats().evictions, 2);
  EXPECT_TRUE(bm.MatchPrefix(probe).empty());
  EXPECT_EQ(bm.NumFreeBlocks(), 0);
  b.tokens.push_back(5);
  b.tokens.push_back(5);
  EXPECT_TRUE(bm.CanAppend(b, 1));   // 8 tokens fit in 4 blocks
  b.tokens.push_back(5);
  EXPECT_FALSE(bm.CanAppend(b, 2));  // 9 would need a fifth
}

// Hash that ignores the parent: a child block collides with any block of equal first token.
uint64_t FirstTokenHash(uint64_t, std::span<const int32_t> t) { return static_cast<uint64_t>(t[0]); }

TEST(BlockManager, CollidingChildUnderAnotherParentIsAMiss) {
  BlockManager bm(16, 2, true, FirstTokenHash);
  Sequence a = MakeSeq({1, 1, 2, 2, 0});  // [2 2] computed after [1 1]
  AdmitAll(bm, a);
  Sequence f = MakeSeq({7, 7, 0});
  AdmitAll(bm, f);
  // e's first block hits f's [7 7]; its second block [2 2] has a's block as hash and token
  // match, but that K/V was computed after [1 1]: the parent check must refuse it.
  Sequence e = MakeSeq({7, 7, 2, 2, 0});
  auto m = bm.MatchPrefix(e);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], f.block_table[0]);
}

TEST(BlockManager, ReusedParentBlockInvalidatesStaleChildren) {
  BlockManager bm(4, 2, true, FirstTokenHash);
  Sequence a = MakeSeq({1, 1, 2});
  AdmitAll(bm, a);
  bm.ResetPrefixCache();  // e.g. new weights: a's [1 1] is no longer shareable
  a.tokens.push_back(2);
  bm.Append(a, 1);  // fills [2 2] after the (now unregistered) [1 1]
  a.num_computed_tokens = 4;
  const int32_t parent = a.block_table[0], child = a.block_table[1];
  EXPECT_TRUE(bm.IsCached(child));
  bm.Free(a);
  Sequence n = MakeSeq({1, 1, 0});  // recomputes [1 1], getting the uncached parent block back
  AdmitAll(bm, n);
  ASSERT_EQ(n.block_table[0], parent);
  Sequence d = MakeSeq({1, 1, 2, 2, 0});
  auto m = bm.MatchPrefix(d);
  ASSERT_EQ(m.size(), 1u);  // [1 1] hits; the stale [2 2] (old generation of its parent) does not
  EXPECT_EQ(m[0], parent);
}

TEST(BlockManager, ResetPrefixCacheForgetsEverything) {
  BlockManager bm(8, 4);
  Sequence a = MakeSeq(Iota(9));
  AdmitAll(bm, a);
  bm.Free(a);
  bm.ResetPrefixCache();
  Sequence b = MakeSeq(Iota(9));
  EXPECT_TRUE(bm.MatchPrefix(b).empty());
  EXPECT_EQ(bm.NumFreeBlocks(), 8);
}

TEST(BlockManager, DisabledPrefixCachingNeverShares) {
  BlockManager bm(8, 4, /*prefix_caching=*/false);
  Sequence a = MakeSeq(Iota(9)), b = MakeSeq(Iota(9));
  AdmitAll(bm, a);
  EXPECT_TRUE(bm.MatchPrefix(b).empty());
  EXPECT_FALSE(bm.IsCached(a.block_table[0]));
}

}  // namespace
}  // namespace tidal::rollout
