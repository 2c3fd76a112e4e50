// Back-to-back projection weights for the CUDA runner: each layer's q/k/v projections (weights
// and, where present, biases) and its gate/up projections live in one allocation each, and the
// named tensors are views into it. The runner then runs one GEMM where there were three (two),
// and a named weight update (Engine::UpdateWeights, the weight transports) still copies in
// place into the storage the decode graphs captured.
//
// Contract: PackProjections rewrites the map's entries for those names (values copied when
// `copy_values`); other entries are untouched. Call it wherever the engine (re)allocates its
// weights, before the runner builds its views. FusedView recognises the layout from the views'
// addresses, so a map that was not packed simply yields undefined tensors (separate GEMMs).
#pragma once

#include <ATen/ATen.h>

#include "core/model.h"

namespace tidal::rollout {

void PackProjections(NamedTensors& weights, int64_t layers, bool copy_values);

struct FusedProjections {
  at::Tensor qkv_weight;      // [q_out + k_out + v_out, hidden]
  at::Tensor qkv_bias;        // [q_out + k_out + v_out], when all three biases exist
  at::Tensor gate_up_weight;  // [2 * intermediate, hidden]
};
FusedProjections FusedView(const LayerWeights& layer);

}  // namespace tidal::rollout
