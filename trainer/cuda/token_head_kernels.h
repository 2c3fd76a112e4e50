// Host entry points of the token-head kernels (trainer/cuda/token_head.cu); trainer/token_head.h
// holds the math and the tensor-level contract.
//
// Contract: torch-free; raw device pointers; `stream` is a cudaStream_t passed as void*. One
// block per row, asynchronous on `stream`, each launch checked (std::runtime_error names the
// kernel). Rows are `v` contiguous elements of `dtype`; targets are int64 in [0, v).
#pragma once

#include <cstdint>

#include "core/cuda/dtype.h"

namespace tidal::trainer::cuda {

using ::tidal::cuda::Dtype;

// logprobs[i], lse[i] and (when entropy != nullptr) entropy[i] of row i of logits * inv_temp.
void TokenHeadStats(Dtype dtype, const void* logits, const int64_t* targets, int64_t n, int64_t v, float inv_temp,
                    float* logprobs, float* lse, float* entropy, void* stream);

// Overwrites each row with its gradient (g_ent / entropy may be null: no entropy term).
void TokenHeadGrad(Dtype dtype, void* logits, const int64_t* targets, int64_t n, int64_t v, float inv_temp,
                   const float* lse, const float* entropy, const float* g_lp, const float* g_ent, void* stream);

}  // namespace tidal::trainer::cuda
