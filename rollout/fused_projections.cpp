#include "rollout/fused_projections.h"

#include <string>
#include <vector>

namespace tidal::rollout {
namespace {

// Moves the named tensors (all present, same dtype and device, same trailing shape) into one
// allocation, back to back along dim 0, and rebinds each name to its slice.
void Pack(NamedTensors& w, const std::vector<std::string>& names, bool copy_values) {
  std::vector<at::Tensor*> parts;
  for (const auto& n : names) {
    auto it = w.find(n);
    if (it == w.end() || !it->second.defined()) return;
    parts.push_back(&it->second);
  }
  const at::Tensor& first = *parts[0];
  int64_t rows = 0;
  for (at::Tensor* p : parts) {
    if (p->scalar_type() != first.scalar_type() || p->device() != first.device() || p->dim() != first.dim() ||
        p->sizes().slice(1) != first.sizes().slice(1)) {
      return;
    }
    rows += p->size(0);
  }
  std::vector<int64_t> shape = first.sizes().vec();
  shape[0] = rows;
  at::Tensor fused = at::empty(shape, first.options());
  int64_t off = 0;
  for (at::Tensor* p : parts) {
    at::Tensor slice = fused.narrow(0, off, p->size(0));
    if (copy_values) slice.copy_(*p);
    off += p->size(0);
    *p = slice;
  }
}

// The tensor spanning `parts` when they are contiguous slices laid back to back in one storage.
at::Tensor Spanning(const std::vector<at::Tensor>& parts) {
  for (const auto& p : parts) {
    if (!p.defined() || !p.is_contiguous()) return {};
  }
  const at::Tensor& first = parts[0];
  int64_t rows = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const at::Tensor& p = parts[i];
    if (!p.storage().is_alias_of(first.storage()) || p.scalar_type() != first.scalar_type() ||
        p.sizes().slice(1) != first.sizes().slice(1) ||
        p.storage_offset() != first.storage_offset() + rows * (first.numel() / first.size(0))) {
      return {};
    }
    rows += p.size(0);
  }
  std::vector<int64_t> shape = first.sizes().vec();
  shape[0] = rows;
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d) strides[d] = strides[d + 1] * shape[d + 1];
  return at::empty({0}, first.options()).set_(first.storage(), first.storage_offset(), shape, strides);
}

}  // namespace

void PackProjections(NamedTensors& weights, int64_t layers, bool copy_values) {
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = LayerPrefix(l);
    Pack(weights, {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"}, copy_values);
    Pack(weights, {p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"}, copy_values);
    Pack(weights, {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"}, copy_values);
  }
}

FusedProjections FusedView(const LayerWeights& l) {
  FusedProjections f;
  f.qkv_weight = Spanning({l.q_proj, l.k_proj, l.v_proj});
  if (l.q_bias.defined() || l.k_bias.defined() || l.v_bias.defined()) {
    f.qkv_bias = Spanning({l.q_bias, l.k_bias, l.v_bias});
    if (!f.qkv_bias.defined()) f.qkv_weight = at::Tensor();  // biases not packed: separate GEMMs
  }
  f.gate_up_weight = Spanning({l.gate_proj, l.up_proj});
  return f;
}

}  // namespace tidal::rollout
