#include "trainer/sharded_model.h"

#include <c10/core/GradMode.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <optional>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/cuda_devices.h"
#include "trainer/token_head.h"

namespace tidal::trainer {
namespace {

void CheckOk(const absl::Status& s) { TORCH_CHECK(s.ok(), s.ToString()); }

}  // namespace

// Walks a fixed schedule of group gathers; Acquire(g) must follow the schedule and starts the next
// entry's gather (prefetch) before returning. Every rank builds the same schedule, so the
// collectives line up.
class ShardedModel::Gatherer {
 public:
  Gatherer(ShardedModel* m, std::vector<int> schedule, bool reference)
      : m_(m), schedule_(std::move(schedule)), reference_(reference) {}

  at::Tensor Acquire(int g) {
    TORCH_CHECK(next_ < schedule_.size() && schedule_[next_] == g, "gather schedule broken at step ", next_,
                ": wanted group ", g);
    if (!pending_ || pending_pos_ != next_) Start(next_);
    InFlight f = std::move(*pending_);
    pending_.reset();
    if (f.work) CheckOk(f.work->Wait());
    ++next_;
    if (m_->options_.prefetch && next_ < schedule_.size()) Start(next_);
    return f.flat;
  }

  bool done() const { return next_ == schedule_.size(); }

 private:
  struct InFlight {
    at::Tensor flat, shard;  // shard kept alive until the gather finished
    std::unique_ptr<CommWork> work;
  };

  void Start(size_t pos) {
    const int g = schedule_[pos];
    const Group& grp = m_->groups_[g];
    InFlight f;
    const at::Tensor& src = reference_ ? m_->reference_[g] : grp.master;
    f.shard = src.to(m_->options_.compute_dtype).contiguous();
    f.flat = at::empty({grp.padded}, f.shard.options());
    auto work = m_->comm_->AllGatherAsync(f.shard, f.flat);
    CheckOk(work.status());
    f.work = std::move(*work);
    pending_ = std::move(f);
    pending_pos_ = pos;
  }

  ShardedModel* m_;
  std::vector<int> schedule_;
  bool reference_;
  size_t next_ = 0;
  std::optional<InFlight> pending_;
  size_t pending_pos_ = 0;
};

ShardedModel::ShardedModel(ModelConfig config, Communicator* comm, ShardingOptions options)
    : config_(std::move(config)), comm_(comm), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<ShardedModel>> ShardedModel::Create(const ModelConfig& config, const NamedTensors& full,
                                                                   Communicator* comm, ShardingOptions options) {
  TIDAL_RETURN_IF_ERROR(config.Validate());
  if (comm == nullptr) return absl::InvalidArgumentError("ShardedModel needs a communicator");
  if (!options.checkpoint_layers.empty() &&
      static_cast<int64_t>(options.checkpoint_layers.size()) != config.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint_layers has ", options.checkpoint_layers.size(),
                                                   " entries for ", config.num_hidden_layers, " layers"));
  }
  auto m = std::unique_ptr<ShardedModel>(new ShardedModel(config, comm, options));
  const int64_t L = config.num_hidden_layers;
  m->groups_.resize(L + 2);
  m->groups_[0].name = "embed";
  for (int64_t l = 0; l < L; ++l) m->groups_[1 + l].name = absl::StrCat("layer", l);
  m->groups_[L + 1].name = "head";
  for (const ParamSpec& spec : ParamSpecs(config)) {
    int g = static_cast<int>(L + 1);
    if (absl::StartsWith(spec.name, "model.embed_tokens.")) {
      g = 0;
    } else if (absl::StartsWith(spec.name, "model.layers.")) {
      g = 1 + std::stoi(spec.name.substr(13));
    }
    Slot s;
    s.name = spec.name;
    s.shape = spec.shape;
    s.numel = 1;
    for (int64_t d : spec.shape) s.numel *= d;
    s.offset = m->groups_[g].numel;
    m->groups_[g].numel += s.numel;
    m->groups_[g].params.push_back(std::move(s));
  }
  const int w = comm->world_size(), r = comm->rank();
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(options.device);
  for (Group& grp : m->groups_) {
    grp.padded = (grp.numel + w - 1) / w * w;
    grp.shard = grp.padded / w;
    const int64_t lo = r * grp.shard, hi = lo + grp.shard;
    at::Tensor master = at::zeros({grp.shard}, at::kFloat);
    for (const Slot& s : grp.params) {
      auto it = full.find(s.name);
      if (it == full.end()) return absl::InvalidArgumentError(absl::StrCat("initial weights lack ", s.name));
      if (it->second.sizes() != at::IntArrayRef(s.shape)) {
        return absl::InvalidArgumentError(absl::StrCat("initial weight ", s.name, " has shape ",
                                                       c10::str(it->second.sizes()), ", config expects ",
                                                       c10::str(at::IntArrayRef(s.shape))));
      }
      const int64_t a = std::max(lo, s.offset), b = std::min(hi, s.offset + s.numel);
      if (a >= b) continue;
      at::Tensor src = it->second.detach().reshape({-1}).narrow(0, a - s.offset, b - a);
      master.narrow(0, a - lo, b - a).copy_(src.to(at::kCPU, at::kFloat));
      // Slots are in offset order, so adjacent slots of the same kind extend one run.
      auto& runs = s.shape.size() >= 2 ? grp.decay_runs : grp.plain_runs;
      if (!runs.empty() && runs.back().first + runs.back().second == a - lo) {
        runs.back().second += b - a;
      } else {
        runs.emplace_back(a - lo, b - a);
      }
    }
    grp.master = master.to(f32);
    grp.exp_avg = at::zeros({grp.shard}, f32);
    grp.exp_avg_sq = at::zeros({grp.shard}, f32);
    grp.grad = at::zeros({grp.shard}, f32);
  }
  return m;
}

int64_t ShardedModel::shard_elements() const {
  int64_t n = 0;
  for (const Group& g : groups_) n += g.shard;
  return n;
}

bool ShardedModel::Checkpointed(int64_t layer) const {
  if (!options_.checkpoint_layers.empty()) return options_.checkpoint_layers[layer];
  return options_.activation_checkpointing;
}

NamedTensors ShardedModel::Views(int g, const at::Tensor& flat) const {
  NamedTensors out;
  for (const Slot& s : groups_[g].params) out.emplace(s.name, flat.narrow(0, s.offset, s.numel).view(s.shape));
  return out;
}

NamedTensors ShardedModel::Leaves(int g, const at::Tensor& flat) const {
  NamedTensors out = Views(g, flat);
  for (auto& [name, t] : out) t = t.detach().requires_grad_(true);
  return out;
}

ShardedModel::PendingReduce ShardedModel::StartReduceScatter(int g, const NamedTensors& leaves) {
  Group& grp = groups_[g];
  at::Tensor flat = at::empty({grp.padded}, grp.master.options().dtype(options_.reduce_dtype));
  int64_t filled = 0;  // slots are in offset order: zero only the gaps (missing grads, padding)
  for (const Slot& s : grp.params) {
    auto it = leaves.find(s.name);
    const at::Tensor gr = it == leaves.end() ? at::Tensor() : it->second.grad();
    if (s.offset > filled) flat.narrow(0, filled, s.offset - filled).zero_();
    if (gr.defined()) {
      flat.narrow(0, s.offset, s.numel).copy_(gr.reshape({-1}));
    } else {
      flat.narrow(0, s.offset, s.numel).zero_();
    }
    filled = s.offset + s.numel;
  }
  if (grp.padded > filled) flat.narrow(0, filled, grp.padded - filled).zero_();
  PendingReduce p;
  p.group = g;
  p.out = at::empty({grp.shard}, flat.options());
  auto work = comm_->ReduceScatterAsync(flat, p.out, ReduceOp::kSum);
  CheckOk(work.status());
  p.work = std::move(*work);
  return p;
}

void ShardedModel::FinishReduceScatter(PendingReduce& p) {
  CheckOk(p.work->Wait());
  groups_[p.group].grad.add_(p.out);
  p = PendingReduce{};
}

TokenOutputs ShardedModel::Forward(const PackedBatch& b, bool with_entropy, bool reference) {
  TORCH_CHECK(!reference || has_reference(), "Forward(reference=true) without a reference snapshot");
  c10::NoGradGuard no_grad;
  const int64_t L = config_.num_hidden_layers;
  const bool tied = config_.tie_word_embeddings;
  std::vector<int> schedule = {EmbedGroup()};
  for (int64_t l = 0; l < L; ++l) schedule.push_back(LayerGroup(l));
  schedule.push_back(HeadGroup());
  if (tied) schedule.push_back(EmbedGroup());
  Gatherer gather(this, schedule, reference);
  const bool empty = b.empty();
  at::Tensor positions;
  AttentionFn attn;
  PackedBounds bounds;
  if (!empty) {
    positions = PackedPositions(b.cu_seqlens, b.ids.size(0));
    bounds = MakePackedBounds(b.cu_seqlens, b.ids.size(0), b.ids.device());
    attn = [&bounds](int64_t, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
      return VarlenCausalAttention(q, k, v, bounds);
    };
  }
  at::Tensor h;
  {
    at::Tensor flat = gather.Acquire(EmbedGroup());
    if (!empty) h = Embed(Views(EmbedGroup(), flat), b.ids);
  }
  for (int64_t l = 0; l < L; ++l) {
    at::Tensor flat = gather.Acquire(LayerGroup(l));
    if (!empty) h = DecoderLayer(config_, LayerView(Views(LayerGroup(l), flat), l), h, positions, l, attn);
  }
  TokenOutputs out;
  NamedTensors head = Views(HeadGroup(), gather.Acquire(HeadGroup()));
  if (tied) {
    for (auto& kv : Views(EmbedGroup(), gather.Acquire(EmbedGroup()))) head.insert(kv);
  }
  if (empty) return out;
  at::Tensor rows = FinalNorm(config_, head, h).index_select(0, b.loss_rows);
  ChunkedHead lm(rows, LmHead(config_, head), b.targets, b.temperature, options_.logits_chunk_tokens,
                 /*keep_bytes=*/0);
  std::tie(out.logprobs, out.entropy) = lm.Forward(with_entropy);
  return out;
}

TokenOutputs ShardedModel::ForwardBackward(const PackedBatch& b, const Objective& objective, bool with_entropy) {
  if (released_) ReacquireForTraining();
  const int64_t L = config_.num_hidden_layers;
  const bool tied = config_.tie_word_embeddings;
  std::vector<int> schedule = {EmbedGroup()};
  for (int64_t l = 0; l < L; ++l) schedule.push_back(LayerGroup(l));
  schedule.push_back(HeadGroup());
  if (tied) schedule.push_back(EmbedGroup());
  for (int64_t l = L - 1; l >= 0; --l) {
    if (Checkpointed(l)) schedule.push_back(LayerGroup(l));
  }
  // Tied: the head's gathered embedding serves the embedding backward too (no second gather).
  if (!tied) schedule.push_back(EmbedGroup());
  Gatherer gather(this, schedule, /*reference=*/false);

  const bool empty = b.empty();
  at::Tensor positions;
  AttentionFn attn;
  PackedBounds bounds;
  if (!empty) {
    positions = PackedPositions(b.cu_seqlens, b.ids.size(0));
    bounds = MakePackedBounds(b.cu_seqlens, b.ids.size(0), b.ids.device());
    attn = [&bounds](int64_t, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
      return VarlenCausalAttention(q, k, v, bounds);
    };
  }

  std::deque<PendingReduce> pending;  // gradient reduce-scatters in flight, oldest first

  // ---- forward: keep each layer's input; non-checkpointed layers keep their graph.
  struct Kept {
    NamedTensors leaves;
    at::Tensor in, out;
  };
  std::vector<at::Tensor> inputs(L);
  std::vector<Kept> kept(L);
  at::Tensor h;
  {
    c10::NoGradGuard no_grad;
    at::Tensor flat = gather.Acquire(EmbedGroup());
    if (!empty) h = Embed(Views(EmbedGroup(), flat), b.ids);
  }
  for (int64_t l = 0; l < L; ++l) {
    at::Tensor flat = gather.Acquire(LayerGroup(l));
    if (empty) continue;
    inputs[l] = h;
    if (Checkpointed(l)) {
      c10::NoGradGuard no_grad;
      h = DecoderLayer(config_, LayerView(Views(LayerGroup(l), flat), l), h, positions, l, attn);
    } else {
      Kept& k = kept[l];
      k.leaves = Leaves(LayerGroup(l), flat);
      k.in = h.detach().requires_grad_(true);
      k.out = DecoderLayer(config_, LayerView(k.leaves, l), k.in, positions, l, attn);
      h = k.out.detach();
    }
  }

  // ---- head: logprobs/entropy without autograd, objective, then chunked backward.
  TokenOutputs result;
  at::Tensor grad_h;
  // Tied: the embedding's leaves live until the embedding backward, which adds its gradient to
  // the head's, so the group is reduce-scattered once.
  NamedTensors embed_leaves;
  {
    NamedTensors head = Leaves(HeadGroup(), gather.Acquire(HeadGroup()));
    if (tied) {
      embed_leaves = Leaves(EmbedGroup(), gather.Acquire(EmbedGroup()));
      for (auto& kv : embed_leaves) head.insert(kv);
    }
    if (!empty) {
      at::Tensor h_leaf = h.detach().requires_grad_(true);
      at::Tensor rows = FinalNorm(config_, head, h_leaf).index_select(0, b.loss_rows);
      at::Tensor w = LmHead(config_, head);  // a leaf of `head`: its gradient is set below
      ChunkedHead lm(rows, w, b.targets, b.temperature, options_.logits_chunk_tokens, options_.head_keep_bytes);
      std::tie(result.logprobs, result.entropy) = lm.Forward(with_entropy);
      at::Tensor lp_leaf = result.logprobs.clone().requires_grad_(true);
      at::Tensor ent_leaf = with_entropy ? result.entropy.clone().requires_grad_(true) : at::Tensor();
      at::Tensor loss = objective(lp_leaf, ent_leaf);
      TORCH_CHECK(loss.defined() && loss.numel() == 1, "objective must return a scalar");
      if (loss.requires_grad()) loss.backward();
      at::Tensor g_lp = lp_leaf.grad().defined() ? lp_leaf.grad() : at::zeros_like(result.logprobs);
      at::Tensor g_ent = (with_entropy && ent_leaf.grad().defined()) ? ent_leaf.grad() : at::Tensor();
      if (rows.size(0) > 0) {
        at::Tensor grad_w = w.grad();
        at::Tensor grad_rows = lm.Backward(g_lp, g_ent, &grad_w);
        if (!w.grad().defined()) w.mutable_grad() = grad_w;
        rows.backward(grad_rows);
      }
      grad_h = h_leaf.grad().defined() ? h_leaf.grad() : at::zeros_like(h);
    }
    pending.push_back(StartReduceScatter(HeadGroup(), head));
  }

  // ---- backward through the layers, last to first.
  for (int64_t l = L - 1; l >= 0; --l) {
    NamedTensors leaves;
    if (Checkpointed(l)) {
      at::Tensor flat = gather.Acquire(LayerGroup(l));
      leaves = Leaves(LayerGroup(l), flat);
      if (!empty) {
        at::Tensor in = inputs[l].detach().requires_grad_(true);
        at::Tensor out = DecoderLayer(config_, LayerView(leaves, l), in, positions, l, attn);
        out.backward(grad_h);
        grad_h = in.grad();
      }
    } else if (!empty) {
      leaves = kept[l].leaves;
      kept[l].out.backward(grad_h);
      grad_h = kept[l].in.grad();
      kept[l] = Kept{};
    }
    inputs[l] = at::Tensor();
    pending.push_back(StartReduceScatter(LayerGroup(l), leaves));
    // One reduce in flight behind the compute: finish the older ones (their streams have long
    // been queued, so the wait rarely stalls) to bound the gradient buffers alive at once.
    while (pending.size() > 1) {
      FinishReduceScatter(pending.front());
      pending.pop_front();
    }
  }
  {
    NamedTensors leaves = tied ? std::move(embed_leaves) : Leaves(EmbedGroup(), gather.Acquire(EmbedGroup()));
    if (!empty) Embed(leaves, b.ids).backward(grad_h);
    pending.push_back(StartReduceScatter(EmbedGroup(), leaves));
  }
  for (PendingReduce& p : pending) FinishReduceScatter(p);
  TORCH_CHECK(gather.done(), "gather schedule not fully consumed");
  return result;
}

void ShardedModel::ZeroGrad() {
  if (released_) ReacquireForTraining();  // fresh zeros
  for (Group& g : groups_) g.grad.zero_();
}

double ShardedModel::GradNorm() {
  if (released_) ReacquireForTraining();
  // One fp32 norm per group (one multi-tensor launch on CUDA), squared and summed in fp64: no
  // fp64 copy of the gradient.
  std::vector<at::Tensor> grads;
  for (const Group& g : groups_) grads.push_back(g.grad);
  at::Tensor sq = at::stack(at::_foreach_norm(grads, 2)).to(at::kDouble).pow(2).sum().reshape({1});
  CheckOk(comm_->AllReduce(sq, ReduceOp::kSum));
  return std::sqrt(sq.item<double>());
}

void ShardedModel::ScaleGrad(double factor) {
  if (released_) ReacquireForTraining();
  for (Group& g : groups_) g.grad.mul_(factor);
}

void ShardedModel::AdamWStep(const AdamWOptions& o) {
  if (released_) ReacquireForTraining();
  ++steps_;
  ++adam_steps_;
  // ATen's fused AdamW (torch.optim.AdamW(fused=True)): one multi-tensor pass over masters,
  // gradients and moments, the same update order and formula as torch.optim.AdamW (decoupled
  // decay first). Two calls: the runs that decay (matrices) and those that do not.
  for (bool decay : {true, false}) {
    std::vector<at::Tensor> p, gr, m, v;
    for (Group& g : groups_) {
      for (auto [off, len] : decay ? g.decay_runs : g.plain_runs) {
        p.push_back(g.master.narrow(0, off, len));
        gr.push_back(g.grad.narrow(0, off, len));
        m.push_back(g.exp_avg.narrow(0, off, len));
        v.push_back(g.exp_avg_sq.narrow(0, off, len));
      }
    }
    if (p.empty()) continue;
    const at::Tensor step = at::full({}, static_cast<double>(adam_steps_), groups_[0].master.options());
    const std::vector<at::Tensor> steps(p.size(), step);  // read-only in the kernel: one tensor serves all
    at::_fused_adamw_(p, gr, m, v, /*max_exp_avg_sqs=*/{}, steps, o.lr, o.beta1, o.beta2,
                      decay ? o.weight_decay : 0.0, o.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
}

void ShardedModel::ResetOptimizerState() {
  if (released_) ReacquireForTraining();
  for (Group& g : groups_) {
    g.exp_avg.zero_();
    g.exp_avg_sq.zero_();
  }
  adam_steps_ = 0;
}

void ShardedModel::SnapshotReference() {
  reference_.clear();
  for (const Group& g : groups_) reference_.push_back(g.master.clone());
}

NamedTensors ShardedModel::FullWeights(bool all_ranks) {
  NamedTensors out;
  for (const Group& g : groups_) {
    at::Tensor flat = at::empty({g.padded}, g.master.options());
    CheckOk(comm_->AllGather(g.master, flat));
    if (!all_ranks && comm_->rank() != 0) continue;
    at::Tensor cpu = flat.to(at::kCPU);
    for (const Slot& s : g.params) out.emplace(s.name, cpu.narrow(0, s.offset, s.numel).view(s.shape).clone());
  }
  return out;
}

NamedTensors ShardedModel::DeviceWeights(at::ScalarType dtype) {
  NamedTensors out;
  for (const Group& g : groups_) {
    // Cast the shard first: the gather then moves `dtype` bytes, and no fp32 full copy exists.
    at::Tensor shard = g.master.to(dtype).contiguous();
    at::Tensor flat = at::empty({g.padded}, shard.options());
    CheckOk(comm_->AllGather(shard, flat));
    for (const Slot& s : g.params) out.emplace(s.name, flat.narrow(0, s.offset, s.numel).view(s.shape));
  }
  return out;
}

namespace {

int64_t Bytes(const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; }

}  // namespace

ShardedModel::PhaseSwitch ShardedModel::ReleaseForRollout(bool offload_optimizer) {
  const auto t0 = MonoNow();
  PhaseSwitch r;
  if (released_) return r;
  const bool cuda = options_.device.is_cuda();
  for (Group& g : groups_) {
    r.bytes_freed += Bytes(g.grad);
    g.grad = at::Tensor();  // accumulators are zero between steps: nothing to keep
    if (offload_optimizer && cuda) {
      const auto pinned = at::TensorOptions().dtype(at::kFloat).pinned_memory(true);
      if (!g.host_exp_avg.defined()) {
        g.host_exp_avg = at::empty({g.shard}, pinned);
        g.host_exp_avg_sq = at::empty({g.shard}, pinned);
      }
      g.host_exp_avg.copy_(g.exp_avg, /*non_blocking=*/true);
      g.host_exp_avg_sq.copy_(g.exp_avg_sq, /*non_blocking=*/true);
      r.bytes_offloaded += Bytes(g.exp_avg) + Bytes(g.exp_avg_sq);
      // Freed on the stream the copies were queued on: the allocator reuses the blocks only after.
      g.exp_avg = at::Tensor();
      g.exp_avg_sq = at::Tensor();
    }
  }
  r.bytes_freed += r.bytes_offloaded;
  offloaded_ = offload_optimizer && cuda;
  released_ = true;
  if (cuda) {
    // The host copies must be complete before anyone reads them (checkpoints), and the cached
    // blocks can only go back to the device once no kernel uses them.
    SynchronizeDevice(options_.device.index() < 0 ? 0 : options_.device.index());
    EmptyDeviceCache();
  }
  r.seconds = SecondsSince(t0);
  return r;
}

ShardedModel::PhaseSwitch ShardedModel::ReacquireForTraining() {
  const auto t0 = MonoNow();
  PhaseSwitch r;
  if (!released_) return r;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(options_.device);
  for (Group& g : groups_) {
    if (offloaded_) {
      g.exp_avg = at::empty({g.shard}, f32);
      g.exp_avg_sq = at::empty({g.shard}, f32);
      g.exp_avg.copy_(g.host_exp_avg, /*non_blocking=*/true);
      g.exp_avg_sq.copy_(g.host_exp_avg_sq, /*non_blocking=*/true);
      r.bytes_offloaded += Bytes(g.exp_avg) + Bytes(g.exp_avg_sq);
    }
    g.grad = at::zeros({g.shard}, f32);
  }
  offloaded_ = false;
  released_ = false;
  r.seconds = SecondsSince(t0);
  return r;
}

std::vector<std::pair<std::string, at::Tensor>> ShardedModel::StateTensors() {
  if (released_) ReacquireForTraining();
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < groups_.size(); ++i) {
    Group& g = groups_[i];
    out.emplace_back(g.name + ".master", g.master);
    out.emplace_back(g.name + ".exp_avg", g.exp_avg);
    out.emplace_back(g.name + ".exp_avg_sq", g.exp_avg_sq);
    if (!reference_.empty()) out.emplace_back(g.name + ".reference", reference_[i]);
  }
  return out;
}

}  // namespace tidal::trainer
