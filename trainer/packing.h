// Packs variable-length sequences into micro-batches by a token budget (back to back, described
// by cu_seqlens; never padded).
//
// Contract: pure functions. A sequence longer than the budget gets a micro-batch of its own.
// Greedy in input order (deterministic; keeps a group's samples together when they are adjacent).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "trainer/sharded_model.h"

namespace tidal::trainer {

// Indices of the sequences of each micro-batch, in input order.
std::vector<std::vector<size_t>> PlanMicroBatches(const std::vector<int64_t>& lengths, int64_t token_budget);

// One sequence to pack: `context` tokens followed by `scored` tokens; every scored token becomes
// one loss position (predicted from the row before it). context must be non-empty.
struct PackSequence {
  const std::vector<int32_t>* context = nullptr;
  const std::vector<int32_t>* scored = nullptr;
};

struct PackedMicroBatch {
  PackedBatch batch;     // on `device`
  at::Tensor seq_index;  // [K] int64: which of this micro-batch's sequences owns each scored token
  std::vector<size_t> members;  // indices into the caller's sequence list
};

PackedMicroBatch PackMicroBatch(const std::vector<PackSequence>& seqs, const std::vector<size_t>& members,
                                double temperature, at::Device device);

}  // namespace tidal::trainer
