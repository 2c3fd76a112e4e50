#include "rollout/step_plan.h"

#include <algorithm>

namespace tidal::rollout {

StepPlan PlanStep(const ScheduledBatch& batch, int64_t block_size) {
  StepPlan p;
  p.block_size = block_size;
  p.num_seqs = std::ssize(batch.seqs);
  p.num_tokens = batch.num_tokens;
  p.token_ids.reserve(p.num_tokens);
  p.positions.reserve(p.num_tokens);
  p.slot_mapping.reserve(p.num_tokens);
  p.cu_seqlens_q.reserve(p.num_seqs + 1);
  p.cu_seqlens_q.push_back(0);
  for (const ScheduledSeq& s : batch.seqs) {
    const Sequence& seq = *s.seq;
    const int64_t start = seq.num_computed_tokens, end = start + s.num_new_tokens;
    p.max_blocks_per_seq = std::max<int64_t>(p.max_blocks_per_seq, std::ssize(seq.block_table));
    p.max_query_len = std::max(p.max_query_len, s.num_new_tokens);
    p.max_context_len = std::max(p.max_context_len, end);
    p.decode_only = p.decode_only && s.num_new_tokens == 1;
    for (int64_t pos = start; pos < end; ++pos) {
      p.token_ids.push_back(seq.tokens[pos]);
      p.positions.push_back(static_cast<int32_t>(pos));
      p.slot_mapping.push_back(int64_t{seq.block_table[pos / block_size]} * block_size +
                               pos % block_size);
    }
    p.cu_seqlens_q.push_back(static_cast<int32_t>(p.token_ids.size()));
    p.context_lens.push_back(static_cast<int32_t>(end));
    if (s.Samples()) {
      p.logits_rows.push_back(p.cu_seqlens_q.back() - 1);
      p.logits_seq.push_back(static_cast<int32_t>(p.cu_seqlens_q.size() - 2));
    }
  }
  p.block_tables.assign(p.num_seqs * p.max_blocks_per_seq, 0);
  for (int64_t b = 0; b < p.num_seqs; ++b) {
    const auto& table = batch.seqs[b].seq->block_table;
    std::copy(table.begin(), table.end(), p.block_tables.begin() + b * p.max_blocks_per_seq);
  }
  if (p.num_seqs == 0) p.decode_only = false;
  return p;
}

}  // namespace tidal::rollout
