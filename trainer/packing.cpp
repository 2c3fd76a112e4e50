#include "trainer/packing.h"

namespace tidal::trainer {

std::vector<std::vector<size_t>> PlanMicroBatches(const std::vector<int64_t>& lengths, int64_t token_budget) {
  TORCH_CHECK(token_budget > 0, "micro-batch token budget must be positive, got ", token_budget);
  std::vector<std::vector<size_t>> out;
  int64_t used = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (out.empty() || used + lengths[i] > token_budget) {
      out.emplace_back();
      used = 0;
    }
    out.back().push_back(i);
    used += lengths[i];
  }
  return out;
}

PackedMicroBatch PackMicroBatch(const std::vector<PackSequence>& seqs, const std::vector<size_t>& members,
                                double temperature, at::Device device) {
  std::vector<int64_t> ids, cu = {0}, rows, targets, seq_index;
  for (size_t j = 0; j < members.size(); ++j) {
    const PackSequence& s = seqs.at(members[j]);
    TORCH_CHECK(s.context && !s.context->empty(), "sequence ", members[j], " has an empty prompt");
    const int64_t start = static_cast<int64_t>(ids.size());
    ids.insert(ids.end(), s.context->begin(), s.context->end());
    const int64_t first = static_cast<int64_t>(ids.size());
    ids.insert(ids.end(), s.scored->begin(), s.scored->end());
    for (size_t t = 0; t < s.scored->size(); ++t) {
      rows.push_back(first + static_cast<int64_t>(t) - 1);
      targets.push_back((*s.scored)[t]);
      seq_index.push_back(static_cast<int64_t>(j));
    }
    (void)start;
    cu.push_back(static_cast<int64_t>(ids.size()));
  }
  auto lt = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(device); };
  PackedMicroBatch out;
  out.batch.ids = lt(ids);
  out.batch.cu_seqlens = lt(cu);
  out.batch.loss_rows = lt(rows);
  out.batch.targets = lt(targets);
  out.batch.temperature = temperature;
  out.seq_index = lt(seq_index);
  out.members = members;
  return out;
}

}  // namespace tidal::trainer
