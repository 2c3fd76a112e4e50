// The CUDA path of ModelRunner (see model_runner.h): kernel attention over the paged cache,
// pinned non-blocking input copies, and decode steps replayed from captured CUDA graphs.
#ifdef TIDAL_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/InferenceMode.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <cmath>

#include "core/cuda/kernel_dtype.h"
#include "rollout/cuda/kernels.h"
#include "rollout/model_runner.h"

namespace tidal::rollout {

struct ModelRunner::CudaState {
  at::cuda::CUDAEvent inputs_copied;  // the pinned staging buffers may be rewritten after it
  bool inputs_pending = false;
  c10::MempoolId_t pool;         // one memory pool shared by every decode graph
};

struct ModelRunner::Graph {
  at::cuda::CUDAGraph graph;
  at::Tensor logits;  // [padded batch, V] fp32, rewritten by every replay
};

ModelRunner::~ModelRunner() {
  graphs_.clear();
}

int64_t ModelRunner::FreeDeviceBytes(at::Device device) {
  if (!device.is_cuda()) return 0;
  c10::cuda::CUDAGuard guard(device);
  size_t free = 0, total = 0;
  C10_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return static_cast<int64_t>(free);
}

void ModelRunner::InitCuda() {
  const int64_t group = model_.num_attention_heads / model_.num_key_value_heads;
  if (!tidal::cuda::KernelSupports(dtype_) ||
      !cuda::PagedAttentionSupports(model_.HeadDim(), group) ||
      model_.num_key_value_heads * model_.HeadDim() * c10::elementSize(dtype_) % 16 != 0) {
    return;  // the LibTorch path serves shapes the kernels are not instantiated for
  }
  cuda_kernels_ = true;
  fused_ = cfg_.fused_layers && !layers_.empty() && !layers_[0].q_norm.defined() &&
           !layers_[0].k_norm.defined();
  inv_freq_ = RopeInvFreq(model_, cfg_.device).to(at::kFloat).contiguous();
  cuda_ = std::make_shared<CudaState>();
  auto i32 = at::TensorOptions().dtype(at::kInt).device(cfg_.device);
  kv_len_ = at::zeros({cfg_.max_batch_tokens}, i32);
  token_seq_ = at::zeros({cfg_.max_batch_tokens}, i32);
  block_tables32_ = at::zeros({cfg_.max_seqs * cfg_.max_blocks_per_seq}, i32);
  auto pinned = at::TensorOptions().pinned_memory(true);
  host_i64_ = at::empty({3 * cfg_.max_batch_tokens + cfg_.max_seqs}, pinned.dtype(at::kLong));
  host_i32_ = at::empty({2 * cfg_.max_batch_tokens + cfg_.max_seqs * cfg_.max_blocks_per_seq},
                        pinned.dtype(at::kInt));
}

void ModelRunner::DropGraphs() { graphs_.clear(); }

int64_t ModelRunner::GraphBatch(int64_t n) const {
  const int64_t cap = std::min(cfg_.max_seqs, cfg_.max_batch_tokens);
  if (!cfg_.cuda_graphs || n > cap) return 0;
  int64_t p = 1;
  while (p < n && p < 16) p *= 2;
  if (n > 16) p = (n + 15) / 16 * 16;
  return std::min(p, cap);
}

void ModelRunner::LoadInputsCuda(const StepPlan& plan, int64_t padded) {
  const int64_t t = plan.num_tokens, b = plan.num_seqs, r = std::ssize(plan.logits_rows);
  const int64_t stride = cfg_.max_blocks_per_seq, mt = cfg_.max_batch_tokens;
  TORCH_CHECK(b <= cfg_.max_seqs && padded <= mt && plan.max_blocks_per_seq <= stride,
              "step plan (", b, " seqs, ", t, " tokens, ", plan.max_blocks_per_seq,
              " blocks/seq) exceeds the runner's buffers");
  if (cuda_->inputs_pending) {  // the previous step's copies still read the staging buffers
    cuda_->inputs_copied.synchronize();
    cuda_->inputs_pending = false;
  }
  int64_t* h64 = host_i64_.data_ptr<int64_t>();
  int64_t* ids = h64;
  int64_t* pos = h64 + mt;
  int64_t* slots = h64 + 2 * mt;
  int64_t* rows = h64 + 3 * mt;
  int32_t* h32 = host_i32_.data_ptr<int32_t>();
  int32_t* kv_len = h32;
  int32_t* seq = h32 + mt;
  int32_t* tables = h32 + 2 * mt;
  for (int64_t i = 0; i < t; ++i) {
    ids[i] = plan.token_ids[i];
    pos[i] = plan.positions[i];
    slots[i] = plan.slot_mapping[i];
  }
  for (int64_t i = t; i < padded; ++i) {  // padding rows: token 0 at position 0, no K/V write
    ids[i] = 0;
    pos[i] = 0;
    slots[i] = -1;
    kv_len[i] = 0;
    seq[i] = 0;
  }
  for (int64_t i = 0; i < r; ++i) rows[i] = plan.logits_rows[i];
  for (int64_t s = 0; s < b; ++s) {
    const int32_t begin = plan.cu_seqlens_q[s], end = plan.cu_seqlens_q[s + 1];
    const int32_t ctx = plan.context_lens[s];
    for (int32_t i = begin; i < end; ++i) {
      kv_len[i] = ctx - (end - i) + 1;  // causal: the cached prefix, then the chunk up to i
      seq[i] = static_cast<int32_t>(s);
    }
    const int64_t used = (ctx + cfg_.block_size - 1) / cfg_.block_size;
    for (int64_t j = 0; j < used; ++j) {
      tables[s * stride + j] = plan.block_tables[s * plan.max_blocks_per_seq + j];
    }
  }
  auto copy = [](at::Tensor& dst, const at::Tensor& src, int64_t offset, int64_t n) {
    if (n > 0) dst.narrow(0, 0, n).copy_(src.narrow(0, offset, n), /*non_blocking=*/true);
  };
  copy(token_ids_, host_i64_, 0, padded);
  copy(positions_, host_i64_, mt, padded);
  copy(slot_mapping_, host_i64_, 2 * mt, padded);
  copy(logits_rows_, host_i64_, 3 * mt, r);
  copy(kv_len_, host_i32_, 0, padded);
  copy(token_seq_, host_i32_, mt, padded);
  // Rows are copied whole up to the last sequence (entries past a row's blocks are never read).
  copy(block_tables32_, host_i32_, 2 * mt, b * stride);
  cuda_->inputs_copied.record(at::cuda::getCurrentCUDAStream());
  cuda_->inputs_pending = true;
}

at::Tensor ModelRunner::CudaAttention(int64_t layer, const at::Tensor& q_in, const at::Tensor& k_in,
                                      const at::Tensor& v_in) {
  const at::Tensor& kc = k_cache_[layer];
  const at::Tensor& vc = v_cache_[layer];
  TORCH_CHECK(q_in.scalar_type() == kc.scalar_type() && k_in.scalar_type() == kc.scalar_type() &&
                  v_in.scalar_type() == kc.scalar_type(),
              "CudaAttention: q/k/v dtype must be the cache's (", kc.scalar_type(), ")");
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const int64_t t = q.size(0);
  void* stream = at::cuda::getCurrentCUDAStream().stream();
  const cuda::Dtype dt = tidal::cuda::KernelDtype(kc.scalar_type());
  cuda::KvAppend(dt, k.data_ptr(), v.data_ptr(), kc.data_ptr(), vc.data_ptr(),
                 slot_mapping_.data_ptr<int64_t>(), t, model_.num_key_value_heads,
                 model_.HeadDim(), stream);
  return AttendCached(layer, q);
}

at::Tensor ModelRunner::AttendCached(int64_t layer, const at::Tensor& q) {
  const at::Tensor& kc = k_cache_[layer];
  const at::Tensor& vc = v_cache_[layer];
  at::Tensor out = at::empty_like(q);
  cuda::PagedAttentionArgs a;
  a.dtype = tidal::cuda::KernelDtype(kc.scalar_type());
  a.q = q.data_ptr();
  a.k_cache = kc.data_ptr();
  a.v_cache = vc.data_ptr();
  a.out = out.data_ptr();
  a.block_tables = block_tables32_.data_ptr<int32_t>();
  a.table_stride = cfg_.max_blocks_per_seq;
  a.token_seq = token_seq_.data_ptr<int32_t>();
  a.kv_len = kv_len_.data_ptr<int32_t>();
  a.num_tokens = q.size(0);
  a.q_heads = model_.num_attention_heads;
  a.kv_heads = model_.num_key_value_heads;
  a.head_dim = model_.HeadDim();
  a.block_size = cfg_.block_size;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(model_.HeadDim())));
  // Decode-sized launches spread each row's keys over several blocks (split-KV); the result is
  // the same bit for bit. Inside a graph capture the workspace comes from the graph's pool.
  const int64_t max_context = cfg_.max_blocks_per_seq * cfg_.block_size;
  a.num_splits = cuda::PagedAttentionSplits(a.num_tokens, a.q_heads, a.kv_heads, a.head_dim, max_context);
  at::Tensor workspace;
  if (a.num_splits > 1) {
    workspace = at::empty({cuda::PagedAttentionWorkspaceFloats(a.num_tokens, a.q_heads, a.head_dim, max_context)},
                          q.options().dtype(at::kFloat));
    a.workspace = workspace.data_ptr<float>();
    a.max_chunks = static_cast<int32_t>(cuda::PagedAttentionChunks(max_context));
  }
  cuda::PagedAttention(a, at::cuda::getCurrentCUDAStream().stream());
  return out;
}

at::Tensor ModelRunner::ForwardCudaFused(int64_t tokens, int64_t rows) {
  // core/model.cpp's DecoderLayer with its elementwise chains fused (same roundings):
  //   x = norm(h); q,k,v = proj(x); rope + append; o = attn; h += o_proj(o); x = norm(h);
  //   h += down(silu(gate(x)) * up(x)); the next layer's (or the final) norm of h.
  void* stream = at::cuda::getCurrentCUDAStream().stream();
  const cuda::Dtype dt = tidal::cuda::KernelDtype(dtype_);
  const int64_t hidden = model_.hidden_size, hq = model_.num_attention_heads,
                hkv = model_.num_key_value_heads, d = model_.HeadDim();
  const float eps = static_cast<float>(model_.rms_norm_eps);
  at::Tensor residual = Embed(*weights_, token_ids_.narrow(0, 0, tokens)).contiguous();
  at::Tensor x = at::empty_like(residual);
  cuda::AddRmsNorm(dt, residual.data_ptr(), nullptr, layers_[0].input_norm.data_ptr(), x.data_ptr(),
                   tokens, hidden, eps, stream);
  auto linear = [](const at::Tensor& in, const at::Tensor& w, const at::Tensor& b) {
    return at::linear(in, w, b.defined() ? std::optional<at::Tensor>(b) : std::nullopt);
  };
  for (int64_t l = 0; l < model_.num_hidden_layers; ++l) {
    const LayerWeights& w = layers_[l];
    const FusedProjections& f = fused_proj_[l];
    at::Tensor q, k, v;
    if (f.qkv_weight.defined()) {  // one GEMM; q, k, v are column slices (RopeAppend takes strides)
      at::Tensor qkv = linear(x, f.qkv_weight, f.qkv_bias);
      q = qkv.narrow(1, 0, hq * d);
      k = qkv.narrow(1, hq * d, hkv * d);
      v = qkv.narrow(1, (hq + hkv) * d, hkv * d);
    } else {
      q = linear(x, w.q_proj, w.q_bias);
      k = linear(x, w.k_proj, w.k_bias);
      v = linear(x, w.v_proj, w.v_bias);
    }
    at::Tensor q_rot = at::empty({tokens, hq, d}, x.options());
    cuda::RopeAppendArgs ra;
    ra.dtype = dt;
    ra.q = q.data_ptr();
    ra.k = k.data_ptr();
    ra.v = v.data_ptr();
    ra.q_stride = q.stride(0);
    ra.k_stride = k.stride(0);
    ra.v_stride = v.stride(0);
    ra.q_out = q_rot.data_ptr();
    ra.k_cache = k_cache_[l].data_ptr();
    ra.v_cache = v_cache_[l].data_ptr();
    ra.positions = positions_.data_ptr<int64_t>();
    ra.inv_freq = inv_freq_.data_ptr<float>();
    ra.slot_mapping = slot_mapping_.data_ptr<int64_t>();
    ra.num_tokens = tokens;
    ra.q_heads = hq;
    ra.kv_heads = hkv;
    ra.head_dim = d;
    cuda::RopeAppend(ra, stream);
    at::Tensor o = at::linear(AttendCached(l, q_rot).view({tokens, hq * d}), w.o_proj);
    cuda::AddRmsNorm(dt, o.data_ptr(), residual.data_ptr(), w.post_attn_norm.data_ptr(), x.data_ptr(),
                     tokens, hidden, eps, stream);
    const int64_t inter = w.gate_proj.size(0);
    at::Tensor act = at::empty({tokens, inter}, x.options());
    if (f.gate_up_weight.defined()) {  // one GEMM: [gate | up] per row
      at::Tensor gate_up = at::linear(x, f.gate_up_weight);
      cuda::SiluMul(dt, gate_up.data_ptr(), static_cast<char*>(gate_up.data_ptr()) + inter * gate_up.element_size(),
                    2 * inter, act.data_ptr(), tokens, inter, stream);
    } else {
      at::Tensor gate = at::linear(x, w.gate_proj);
      at::Tensor up = at::linear(x, w.up_proj);
      cuda::SiluMul(dt, gate.data_ptr(), up.data_ptr(), inter, act.data_ptr(), tokens, inter, stream);
    }
    at::Tensor mlp = at::linear(act, w.down_proj);
    const at::Tensor& next_norm = l + 1 < model_.num_hidden_layers
                                      ? layers_[l + 1].input_norm
                                      : weights_->at("model.norm.weight");
    cuda::AddRmsNorm(dt, mlp.data_ptr(), residual.data_ptr(), next_norm.data_ptr(), x.data_ptr(),
                     tokens, hidden, eps, stream);
  }
  if (rows >= 0) x = x.index_select(0, logits_rows_.narrow(0, 0, rows));
  return at::linear(x, LmHead(model_, *weights_));  // in the model's dtype: the sampler widens as it reads
}

at::Tensor ModelRunner::ForwardCuda(int64_t tokens, int64_t rows) {
  if (fused_) return ForwardCudaFused(tokens, rows);
  at::Tensor h = Embed(*weights_, token_ids_.narrow(0, 0, tokens));
  at::Tensor positions = positions_.narrow(0, 0, tokens);
  AttentionFn attn = [this](int64_t layer, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v) { return CudaAttention(layer, q, k, v); };
  for (int64_t l = 0; l < model_.num_hidden_layers; ++l) {
    h = DecoderLayer(model_, layers_[l], h, positions, l, attn);
  }
  if (rows >= 0) h = h.index_select(0, logits_rows_.narrow(0, 0, rows));
  h = FinalNorm(model_, *weights_, h);
  return at::linear(h, LmHead(model_, *weights_));
}

void ModelRunner::CaptureGraph(int64_t padded) {
  // Inputs must be valid while capturing and warming up: the caller loaded a plan, or
  // CaptureGraphs loaded an all-padding one.
  ForwardCuda(padded, -1);  // warm-up outside capture (cuBLAS handles, allocator blocks)
  // A pool whose graphs were all destroyed is released by the allocator: start a new one.
  if (graphs_.empty()) cuda_->pool = at::cuda::graph_pool_handle();
  auto g = std::make_shared<Graph>();
  at::cuda::CUDAStream capture = at::cuda::getStreamFromPool(/*isHighPriority=*/false, cfg_.device.index());
  at::cuda::CUDAStream current = at::cuda::getCurrentCUDAStream();
  at::cuda::CUDAEvent ready;
  ready.record(current);
  ready.block(capture);
  {
    c10::cuda::CUDAStreamGuard stream_guard(capture);
    g->graph.capture_begin(cuda_->pool, cudaStreamCaptureModeThreadLocal);
    g->logits = ForwardCuda(padded, -1);
    g->graph.capture_end();
  }
  at::cuda::CUDAEvent captured;
  captured.record(capture);
  captured.block(current);
  graphs_.emplace(padded, std::move(g));
}

void ModelRunner::CaptureGraphs() {
  if (!cfg_.cuda_graphs || layers_.empty()) return;
  c10::InferenceMode guard;
  c10::cuda::CUDAGuard device_guard(cfg_.device);
  std::vector<int64_t> sizes;
  for (int64_t n = 1; GraphBatch(n) > 0; n = GraphBatch(n) + 1) sizes.push_back(GraphBatch(n));
  StepPlan empty;
  for (auto it = sizes.rbegin(); it != sizes.rend(); ++it) {
    if (graphs_.count(*it)) continue;
    LoadInputsCuda(empty, *it);  // every row padding: no K/V written, nothing attended
    CaptureGraph(*it);
  }
}

at::Tensor ModelRunner::RunCuda(const StepPlan& plan) {
  c10::cuda::CUDAGuard device_guard(cfg_.device);
  const int64_t padded = plan.decode_only ? GraphBatch(plan.num_seqs) : 0;
  if (padded == 0) {
    LoadInputsCuda(plan, plan.num_tokens);
    return ForwardCuda(plan.num_tokens, std::ssize(plan.logits_rows));
  }
  // Decode-only: every sequence's one token is its logits row, in batch order.
  LoadInputsCuda(plan, padded);
  auto it = graphs_.find(padded);
  if (it == graphs_.end()) {  // normally captured up front (CaptureGraphs)
    CaptureGraph(padded);
    it = graphs_.find(padded);
  }
  it->second->graph.replay();
  return it->second->logits.narrow(0, 0, plan.num_seqs);
}

}  // namespace tidal::rollout
#endif  // TIDAL_WITH_CUDA
