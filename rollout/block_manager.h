// Paged KV-cache bookkeeping: fixed-size blocks, reference counts, a free list, prefix caching.
//
// Contract:
// - Pure bookkeeping over block ids [0, num_blocks); the K/V tensors live in the ModelRunner.
//   Single-threaded: the Scheduler calls it on the engine's thread.
// - A sequence gets blocks in two moves: Admit(seq, MatchPrefix(seq)) when it leaves the waiting
//   queue (shares cached blocks of its prefix, ref count +1 each), then Append(seq, n) before
//   every step that computes n more of its tokens. Free(seq) returns everything (preemption,
//   finish, abort) and resets seq.num_computed_tokens to 0.
// - Prefix caching: a full block is identified by a chained hash (parent block's hash, this
//   block's tokens). A block is registered when Append schedules the step that fills it; that
//   is early enough for a sibling scheduled later in the SAME step to share it, because the
//   runner writes every token's K/V of a layer before any attention of that layer reads them.
//   A hit is accepted only if the candidate's stored tokens AND its parent block (id plus
//   generation, bumped whenever a block is reused for other content) equal ours, so a hash
//   collision can cost a miss, never a wrong K/V.
// - Freed blocks that carry a hash stay cached (and matchable) in LRU order; uncached free
//   blocks are handed out first, then the least recently freed cached block is evicted.
// - MatchPrefix leaves at least the last token uncached: its logits are needed to sample.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "rollout/sequence.h"

namespace tidal::rollout {

class BlockManager {
 public:
  using HashFn = std::function<uint64_t(uint64_t parent_hash, std::span<const int32_t> tokens)>;
  static uint64_t ChainHash(uint64_t parent_hash, std::span<const int32_t> tokens);

  struct Stats {
    int64_t queried_tokens = 0;  // tokens of sequences at admission
    int64_t hit_tokens = 0;      // of which found in the prefix cache
    int64_t evictions = 0;       // cached blocks reused for other content
  };

  BlockManager(int64_t num_blocks, int64_t block_size, bool prefix_caching = true,
               HashFn hash = ChainHash);

  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t block_size() const { return block_size_; }
  // Blocks nobody references (cached ones included: they are evictable).
  int64_t NumFreeBlocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t BlocksFor(int64_t num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }

  // Cached blocks holding the longest full-block prefix of seq.tokens (at most NumTokens()-1
  // tokens). Takes no references.
  std::vector<int32_t> MatchPrefix(const Sequence& seq) const;
  // Whether Admit(matched) followed by Append up to `num_tokens` total tokens fits now.
  bool CanAdmit(std::span<const int32_t> matched, int64_t num_tokens) const;
  // seq must hold no blocks. Shares `matched`; sets num_computed_tokens to the hit length.
  void Admit(Sequence& seq, std::span<const int32_t> matched);
  // Whether seq can grow to num_computed_tokens + num_new_tokens tokens.
  bool CanAppend(const Sequence& seq, int64_t num_new_tokens) const;
  // Grows seq.block_table to cover num_computed_tokens + num_new_tokens tokens and registers
  // the blocks that this step fills. Precondition: CanAppend.
  void Append(Sequence& seq, int64_t num_new_tokens);
  // Drops seq's references (last block first, so prefixes are evicted last).
  void Free(Sequence& seq);
  // Forgets every cached hash (new weights make old K/V wrong). Blocks in use stay allocated.
  void ResetPrefixCache();

  int32_t RefCount(int32_t block) const { return blocks_[block].ref; }
  bool IsCached(int32_t block) const;  // registered and reachable through the hash map
  const Stats& stats() const { return stats_; }

 private:
  struct Block {
    int32_t ref = 0;
    uint32_t gen = 0;  // bumped when reused for new content; children remember their parent's
    bool hashed = false;
    uint64_t hash = 0;
    int32_t parent = -1;
    uint32_t parent_gen = 0;
    std::vector<int32_t> tokens;  // copy of the block's tokens, compared on a hit
    std::list<int32_t>::iterator free_pos;
    bool in_free = false;
  };

  int32_t AllocateFresh();
  void Acquire(int32_t id);
  void Release(int32_t id);
  void Register(Sequence& seq, int64_t block_index);
  bool Matches(int32_t id, uint64_t hash, std::span<const int32_t> tokens, int32_t parent) const;

  int64_t block_size_;
  bool prefix_caching_;
  HashFn hash_;
  std::vector<Block> blocks_;
  std::list<int32_t> free_;  // front: next to hand out (uncached first, then cached by LRU)
  std::unordered_map<uint64_t, int32_t> cache_;
  Stats stats_;
};

}  // namespace tidal::rollout
