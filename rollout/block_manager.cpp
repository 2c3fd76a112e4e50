#include "rollout/block_manager.h"

#include <algorithm>
#include <cassert>
#include <stdexcept>

#include "core/hash.h"

namespace tidal::rollout {

uint64_t BlockManager::ChainHash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t h = SplitMix64(parent_hash ^ 0x7469646c616c6b76ULL);
  for (int32_t t : tokens) h = SplitMix64(h ^ static_cast<uint32_t>(t));
  return h;
}

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size, bool prefix_caching,
                           HashFn hash)
    : block_size_(block_size), prefix_caching_(prefix_caching), hash_(std::move(hash)) {
  if (num_blocks <= 0 || block_size <= 0) {
    throw std::invalid_argument("BlockManager: num_blocks and block_size must be positive");
  }
  blocks_.resize(num_blocks);
  for (int32_t i = 0; i < num_blocks; ++i) {
    blocks_[i].free_pos = free_.insert(free_.end(), i);
    blocks_[i].in_free = true;
  }
}

bool BlockManager::Matches(int32_t id, uint64_t hash, std::span<const int32_t> tokens,
                           int32_t parent) const {
  const Block& b = blocks_[id];
  if (!b.hashed || b.hash != hash || b.parent != parent) return false;
  if (parent >= 0 && b.parent_gen != blocks_[parent].gen) return false;
  return std::equal(b.tokens.begin(), b.tokens.end(), tokens.begin(), tokens.end());
}

std::vector<int32_t> BlockManager::MatchPrefix(const Sequence& seq) const {
  std::vector<int32_t> matched;
  if (!prefix_caching_ || seq.NumTokens() == 0) return matched;
  const int64_t max_blocks = (seq.NumTokens() - 1) / block_size_;
  uint64_t h = 0;
  int32_t parent = -1;
  for (int64_t j = 0; j < max_blocks; ++j) {
    auto tokens = std::span<const int32_t>(seq.tokens).subspan(j * block_size_, block_size_);
    h = hash_(h, tokens);
    auto it = cache_.find(h);
    if (it == cache_.end() || !Matches(it->second, h, tokens, parent)) break;
    matched.push_back(it->second);
    parent = it->second;
  }
  return matched;
}

bool BlockManager::CanAdmit(std::span<const int32_t> matched, int64_t num_tokens) const {
  int64_t needed = std::max<int64_t>(0, BlocksFor(num_tokens) - std::ssize(matched));
  // A matched block nobody references sits in the free list: taking it shrinks the pool.
  for (int32_t id : matched) needed += blocks_[id].ref == 0 ? 1 : 0;
  return needed <= NumFreeBlocks();
}

void BlockManager::Admit(Sequence& seq, std::span<const int32_t> matched) {
  assert(seq.block_table.empty());
  for (int32_t id : matched) {
    Acquire(id);
    seq.block_table.push_back(id);
    seq.block_hashes.push_back(blocks_[id].hash);
  }
  const int64_t hit = std::ssize(matched) * block_size_;
  seq.num_computed_tokens = hit;
  seq.num_cached_tokens += hit;
  stats_.queried_tokens += seq.NumTokens();
  stats_.hit_tokens += hit;
}

bool BlockManager::CanAppend(const Sequence& seq, int64_t num_new_tokens) const {
  const int64_t needed = BlocksFor(seq.num_computed_tokens + num_new_tokens) -
                         std::ssize(seq.block_table);
  return needed <= NumFreeBlocks();
}

void BlockManager::Append(Sequence& seq, int64_t num_new_tokens) {
  const int64_t total = seq.num_computed_tokens + num_new_tokens;
  assert(total <= seq.NumTokens());
  while (std::ssize(seq.block_table) < BlocksFor(total)) {
    seq.block_table.push_back(AllocateFresh());
  }
  if (!prefix_caching_) return;
  for (int64_t j = std::ssize(seq.block_hashes); j < total / block_size_; ++j) Register(seq, j);
}

void BlockManager::Register(Sequence& seq, int64_t j) {
  auto tokens = std::span<const int32_t>(seq.tokens).subspan(j * block_size_, block_size_);
  const uint64_t h = hash_(j == 0 ? 0 : seq.block_hashes[j - 1], tokens);
  seq.block_hashes.push_back(h);
  const int32_t id = seq.block_table[j];
  Block& b = blocks_[id];
  if (b.hashed) return;  // a shared block from Admit: already registered
  b.hashed = true;
  b.hash = h;
  b.tokens.assign(tokens.begin(), tokens.end());
  b.parent = j == 0 ? -1 : seq.block_table[j - 1];
  b.parent_gen = b.parent >= 0 ? blocks_[b.parent].gen : 0;
  // Newest wins on a collision or duplicate; the older block stays valid but unreachable.
  cache_[h] = id;
}

int32_t BlockManager::AllocateFresh() {
  assert(!free_.empty());
  const int32_t id = free_.front();
  free_.pop_front();
  Block& b = blocks_[id];
  b.in_free = false;
  if (b.hashed) {
    auto it = cache_.find(b.hash);
    if (it != cache_.end() && it->second == id) cache_.erase(it);
    ++stats_.evictions;
  }
  b.hashed = false;
  b.tokens.clear();
  b.parent = -1;
  ++b.gen;
  b.ref = 1;
  return id;
}

void BlockManager::Acquire(int32_t id) {
  Block& b = blocks_[id];
  if (b.in_free) {
    free_.erase(b.free_pos);
    b.in_free = false;
  }
  ++b.ref;
}

void BlockManager::Release(int32_t id) {
  Block& b = blocks_[id];
  assert(b.ref > 0);
  if (--b.ref > 0) return;
  // Cached blocks go to the LRU end (evicted last); uncached ones are reused first.
  b.free_pos = b.hashed ? free_.insert(free_.end(), id) : free_.insert(free_.begin(), id);
  b.in_free = true;
}

void BlockManager::Free(Sequence& seq) {
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend(); ++it) Release(*it);
  seq.block_table.clear();
  seq.block_hashes.clear();
  seq.num_computed_tokens = 0;
}

void BlockManager::ResetPrefixCache() {
  cache_.clear();
  for (Block& b : blocks_) {
    b.hashed = false;
    b.tokens.clear();
  }
}

bool BlockManager::IsCached(int32_t block) const {
  const Block& b = blocks_[block];
  if (!b.hashed) return false;
  auto it = cache_.find(b.hash);
  return it != cache_.end() && it->second == block;
}

}  // namespace tidal::rollout
