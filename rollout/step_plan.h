// One engine step as plain index arrays: what the device-side model runner consumes.
//
// Contract: PlanStep reads the scheduled batch (after Schedule(), before Commit()) and copies
// everything the forward pass needs into flat arrays, FlashInfer `paged_kv_t` style, so a CPU
// or CUDA runner needs no Sequence, no pointer chasing and no allocation: copy the arrays into
// static device buffers and run (a decode-only step can be replayed from a CUDA graph). Torch-free.
//
// Layout (B scheduled sequences, T = sum of their new tokens, R rows that need logits):
//   token_ids[T], positions[T]   new tokens, sequence after sequence, in the batch's order
//   slot_mapping[T]              flat cache slot (block_id * block_size + offset) each new
//                                token's K/V is written to
//   cu_seqlens_q[B+1]            boundaries of each sequence's new tokens in [0, T)
//   context_lens[B]              tokens in the cache once this step's tokens are written: the
//                                keys each sequence's queries attend to (causally: query i of a
//                                chunk of n sees keys [0, context_len - n + i])
//   block_tables[B * max_blocks_per_seq]  row-major, rows padded with block 0 past the end
//   logits_rows[R]               index in [0, T) of each last token whose logits are sampled
//   logits_seq[R]                the batch index of that sequence
#pragma once

#include <cstdint>
#include <vector>

#include "rollout/batch_scheduler.h"

namespace tidal::rollout {

struct StepPlan {
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  int64_t block_size = 0;
  int64_t max_blocks_per_seq = 0;
  int64_t max_query_len = 0;
  int64_t max_context_len = 0;
  bool decode_only = true;  // every sequence has exactly one new token
  std::vector<int32_t> token_ids, positions;
  std::vector<int64_t> slot_mapping;
  std::vector<int32_t> cu_seqlens_q, context_lens;
  std::vector<int32_t> block_tables;
  std::vector<int32_t> logits_rows, logits_seq;
};

StepPlan PlanStep(const ScheduledBatch& batch, int64_t block_size);

}  // namespace tidal::rollout
