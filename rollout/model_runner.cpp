#include "rollout/model_runner.h"

#include <c10/core/InferenceMode.h>

#include <cmath>

namespace tidal::rollout {
namespace {

at::Tensor HostLongs(const std::vector<int64_t>& v) {
  return at::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kLong);
}

at::Tensor HostInts(const std::vector<int32_t>& v) {
  return at::from_blob(const_cast<int32_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kInt);
}

// Copies a host array into the head of a device buffer (converting to the buffer's dtype).
void Fill(at::Tensor& buffer, const at::Tensor& host) {
  TORCH_CHECK(host.numel() <= buffer.numel(), "step input of ", host.numel(),
              " entries exceeds its buffer of ", buffer.numel());
  if (host.numel() > 0) buffer.narrow(0, 0, host.numel()).copy_(host);
}

}  // namespace

ModelRunner::ModelRunner(const ModelConfig& config, const NamedTensors* weights, RunnerConfig cfg)
    : model_(config), weights_(weights), cfg_(cfg) {
  TORCH_CHECK(cfg_.num_blocks > 0 && cfg_.block_size > 0 && cfg_.max_blocks_per_seq > 0,
              "ModelRunner: num_blocks, block_size and max_blocks_per_seq must be positive");
  dtype_ = weights_->at("model.embed_tokens.weight").scalar_type();
  RefreshWeightViews();
  auto opts = at::TensorOptions().dtype(at::kLong).device(cfg_.device);
  token_ids_ = at::zeros({cfg_.max_batch_tokens}, opts);
  positions_ = at::zeros({cfg_.max_batch_tokens}, opts);
  slot_mapping_ = at::zeros({cfg_.max_batch_tokens}, opts);
  logits_rows_ = at::zeros({cfg_.max_seqs}, opts);
  decode_rows_ = at::zeros({cfg_.max_seqs}, opts);
  decode_lens_ = at::zeros({cfg_.max_seqs}, opts);
  decode_tables_ = at::zeros({cfg_.max_seqs * cfg_.max_blocks_per_seq}, opts);
  block_tables_ = at::zeros({cfg_.max_seqs * cfg_.max_blocks_per_seq}, opts);
  if (cfg_.device.is_cuda()) InitCuda();
  AllocateKvCache();
}

int64_t ModelRunner::KvBytesPerBlock(const ModelConfig& c, int64_t block_size,
                                     at::ScalarType dtype) {
  return 2 * c.num_hidden_layers * block_size * c.num_key_value_heads * c.HeadDim() *
         static_cast<int64_t>(c10::elementSize(dtype));
}

void ModelRunner::AllocateKvCache() {
  if (HasKvCache()) return;
  auto opts = at::TensorOptions().dtype(dtype_).device(cfg_.device);
  const std::vector<int64_t> shape = {cfg_.num_blocks, cfg_.block_size,
                                      model_.num_key_value_heads, model_.HeadDim()};
  for (int64_t l = 0; l < model_.num_hidden_layers; ++l) {
    k_cache_.push_back(at::zeros(shape, opts));
    v_cache_.push_back(at::zeros(shape, opts));
  }
  if (cuda_kernels_) CaptureGraphs();
}

void ModelRunner::ReleaseKvCache() {
  DropGraphs();  // they captured the cache's addresses
  k_cache_.clear();
  v_cache_.clear();
}

void ModelRunner::DropWeightViews() {
  DropGraphs();
  layers_.clear();
  fused_proj_.clear();
}

void ModelRunner::RefreshWeightViews() {
  DropGraphs();  // new weight storage: captured addresses are stale
  layers_.clear();
  fused_proj_.clear();
  for (int64_t l = 0; l < model_.num_hidden_layers; ++l) {
    layers_.push_back(LayerView(*weights_, l));
    fused_proj_.push_back(FusedView(layers_.back()));
  }
}

void ModelRunner::LoadInputs(const StepPlan& plan) {
  TORCH_CHECK(plan.num_seqs <= cfg_.max_seqs && plan.num_tokens <= cfg_.max_batch_tokens &&
                  plan.max_blocks_per_seq <= cfg_.max_blocks_per_seq,
              "step plan (", plan.num_seqs, " seqs, ", plan.num_tokens, " tokens, ",
              plan.max_blocks_per_seq, " blocks/seq) exceeds the runner's buffers");
  plan_ = &plan;
  Fill(token_ids_, HostInts(plan.token_ids));
  Fill(positions_, HostInts(plan.positions));
  Fill(slot_mapping_, HostLongs(plan.slot_mapping));
  Fill(logits_rows_, HostInts(plan.logits_rows));
  // Block tables re-laid with the runner's fixed row stride.
  std::vector<int64_t> tables(plan.num_seqs * cfg_.max_blocks_per_seq, 0);
  for (int64_t b = 0; b < plan.num_seqs; ++b) {
    for (int64_t j = 0; j < plan.max_blocks_per_seq; ++j) {
      tables[b * cfg_.max_blocks_per_seq + j] = plan.block_tables[b * plan.max_blocks_per_seq + j];
    }
  }
  Fill(block_tables_, HostLongs(tables));
  // Split single-token sequences (decodes) from multi-token chunks.
  std::vector<int64_t> rows, lens, dtables;
  prefill_seqs_.clear();
  prefill_masks_.clear();
  decode_blocks_ = 0;
  for (int64_t b = 0; b < plan.num_seqs; ++b) {
    const int64_t n = plan.cu_seqlens_q[b + 1] - plan.cu_seqlens_q[b];
    const int64_t ctx = plan.context_lens[b];
    if (n == 1) {
      rows.push_back(plan.cu_seqlens_q[b]);
      lens.push_back(ctx);
      decode_blocks_ = std::max(decode_blocks_, (ctx + cfg_.block_size - 1) / cfg_.block_size);
    } else if (n > 1) {
      prefill_seqs_.push_back(b);
      at::Tensor mask;
      if (ctx > n) {  // causal with the cached context in front: query i sees keys <= ctx-n+i
        auto o = at::TensorOptions().dtype(at::kLong).device(cfg_.device);
        mask = at::arange(ctx, o).unsqueeze(0) <= (at::arange(n, o) + (ctx - n)).unsqueeze(1);
      }
      prefill_masks_.push_back(mask);
    }
  }
  num_decode_ = std::ssize(rows);
  for (int64_t b = 0; b < plan.num_seqs; ++b) {
    if (plan.cu_seqlens_q[b + 1] - plan.cu_seqlens_q[b] != 1) continue;
    for (int64_t j = 0; j < decode_blocks_; ++j) {
      dtables.push_back(j < plan.max_blocks_per_seq ? plan.block_tables[b * plan.max_blocks_per_seq + j] : 0);
    }
  }
  Fill(decode_rows_, HostLongs(rows));
  Fill(decode_lens_, HostLongs(lens));
  Fill(decode_tables_, HostLongs(dtables));
  if (num_decode_ > 0) {  // keys past each context length are padding
    const int64_t len = decode_blocks_ * cfg_.block_size;
    at::Tensor lens = decode_lens_.narrow(0, 0, num_decode_);
    decode_mask_ = (at::arange(len, lens.options()).unsqueeze(0) < lens.unsqueeze(1))
                       .view({num_decode_, 1, 1, len});
  }
}

at::Tensor ModelRunner::PagedAttention(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v) {
  const int64_t t = q.size(0), hq = q.size(1), d = q.size(2), hkv = k.size(1), g = hq / hkv;
  const int64_t bs = cfg_.block_size;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  at::Tensor& kc = k_cache_[layer];
  at::Tensor& vc = v_cache_[layer];
  at::Tensor slots = slot_mapping_.narrow(0, 0, t);
  kc.view({-1, hkv, d}).index_copy_(0, slots, k.to(kc.scalar_type()));
  vc.view({-1, hkv, d}).index_copy_(0, slots, v.to(vc.scalar_type()));
  at::Tensor out = at::empty_like(q);

  if (num_decode_ > 0) {
    const int64_t nd = num_decode_, len = decode_blocks_ * bs;
    at::Tensor tables = decode_tables_.narrow(0, 0, nd * decode_blocks_);
    // [nd, hkv, len, d]; padded keys beyond each context are masked out.
    at::Tensor kd = kc.index_select(0, tables).view({nd, len, hkv, d}).transpose(1, 2);
    at::Tensor vd = vc.index_select(0, tables).view({nd, len, hkv, d}).transpose(1, 2);
    at::Tensor rows = decode_rows_.narrow(0, 0, nd);
    // The g query heads of one kv head ride along the query-length axis: no kv repeat needed.
    at::Tensor qd = q.index_select(0, rows).view({nd, hkv, g, d});
    at::Tensor o = at::scaled_dot_product_attention(qd, kd.to(q.scalar_type()),
                                                    vd.to(q.scalar_type()), decode_mask_, 0.0, false, scale);
    out.index_copy_(0, rows, o.reshape({nd, hq, d}));
  }

  const StepPlan& plan = *plan_;
  for (size_t i = 0; i < prefill_seqs_.size(); ++i) {
    const int64_t b = prefill_seqs_[i];
    const int64_t start = plan.cu_seqlens_q[b], n = plan.cu_seqlens_q[b + 1] - start;
    const int64_t ctx = plan.context_lens[b];
    at::Tensor ks, vs;
    if (ctx == n) {  // nothing cached in front of this chunk: its own k/v are the whole context
      ks = k.narrow(0, start, n);
      vs = v.narrow(0, start, n);
    } else {
      const int64_t nb = (ctx + bs - 1) / bs;
      at::Tensor table = block_tables_.narrow(0, b * cfg_.max_blocks_per_seq, nb);
      ks = kc.index_select(0, table).view({nb * bs, hkv, d}).narrow(0, 0, ctx).to(q.scalar_type());
      vs = vc.index_select(0, table).view({nb * bs, hkv, d}).narrow(0, 0, ctx).to(q.scalar_type());
    }
    ks = ks.transpose(0, 1);  // [hkv, ctx, d]
    vs = vs.transpose(0, 1);
    if (g > 1) {  // HF repeat_kv order, as the reference attention
      ks = ks.repeat_interleave(g, 0);
      vs = vs.repeat_interleave(g, 0);
    }
    at::Tensor qs = q.narrow(0, start, n).transpose(0, 1);  // [hq, n, d]
    at::Tensor o = ctx == n
        ? at::scaled_dot_product_attention(qs, ks, vs, std::nullopt, 0.0, true, scale)
        : at::scaled_dot_product_attention(qs, ks, vs, prefill_masks_[i], 0.0, false, scale);
    out.narrow(0, start, n).copy_(o.transpose(0, 1));
  }
  return out;
}

at::Tensor ModelRunner::Run(const StepPlan& plan) {
  TORCH_CHECK(HasKvCache(), "ModelRunner::Run: the KV cache is released");
  c10::InferenceMode guard;
  if (cuda_kernels_) return RunCuda(plan);
  LoadInputs(plan);
  const int64_t t = plan.num_tokens;
  at::Tensor h = Embed(*weights_, token_ids_.narrow(0, 0, t));
  at::Tensor positions = positions_.narrow(0, 0, t);
  AttentionFn attn = [this](int64_t layer, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v) { return PagedAttention(layer, q, k, v); };
  for (int64_t l = 0; l < model_.num_hidden_layers; ++l) {
    h = DecoderLayer(model_, layers_[l], h, positions, l, attn);
  }
  const int64_t r = std::ssize(plan.logits_rows);
  at::Tensor rows = h.index_select(0, logits_rows_.narrow(0, 0, r));
  rows = FinalNorm(model_, *weights_, rows);
  return at::linear(rows, LmHead(model_, *weights_)).to(at::kFloat);
}

#ifndef TIDAL_WITH_CUDA
// Built without CUDA: the LibTorch path is the only one (model_runner_cuda.cpp has the other).
struct ModelRunner::CudaState {};
struct ModelRunner::Graph {};
ModelRunner::~ModelRunner() = default;
void ModelRunner::InitCuda() {}
void ModelRunner::DropGraphs() { graphs_.clear(); }
void ModelRunner::CaptureGraphs() {}
at::Tensor ModelRunner::RunCuda(const StepPlan&) {
  TORCH_CHECK(false, "ModelRunner: built without CUDA kernels");
  return at::Tensor();
}
int64_t ModelRunner::FreeDeviceBytes(at::Device) { return 0; }
#endif

}  // namespace tidal::rollout
