// Autograd wrappers of the fused layer kernels (see fused_layer_ops.h).
#include "core/cuda/fused_layer_ops.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace tidal {
namespace {

std::atomic<bool>& FusedFlag() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("TIDAL_TRAIN_FUSED");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }()};
  return on;
}

}  // namespace

bool FusedLayerOpsEnabled() { return FusedFlag().load(std::memory_order_relaxed); }
void SetFusedLayerOpsEnabled(bool on) { FusedFlag().store(on, std::memory_order_relaxed); }

}  // namespace tidal

#ifdef TIDAL_WITH_CUDA
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/cuda/fused_layer_kernels.h"
#include "core/cuda/kernel_dtype.h"

namespace tidal::cuda {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void* Stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// Pointer to element `offset` of t's storage view.
const void* At(const at::Tensor& t, int64_t offset) {
  return static_cast<const char*>(t.const_data_ptr()) + offset * t.element_size();
}
void* MutAt(const at::Tensor& t, int64_t offset) {
  return static_cast<char*>(t.mutable_data_ptr()) + offset * t.element_size();
}

// [T, H, D] with each row's heads back to back (the layout the RoPE kernel reads); row strides
// may be anything, so column blocks of a packed projection pass without a copy.
at::Tensor RowsOfHeads(const at::Tensor& x) {
  const bool ok = x.stride(2) == 1 && (x.size(1) <= 1 || x.stride(1) == x.size(2));
  return ok ? x : x.contiguous();
}

// A gradient autograd left undefined (an unused output) is zero.
at::Tensor GradOrZeros(const at::Tensor& g, const at::Tensor& like) {
  return g.defined() ? g.contiguous() : at::zeros_like(like, at::MemoryFormat::Contiguous);
}

struct RmsNormFn : torch::autograd::Function<RmsNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    c10::cuda::CUDAGuard guard(x.device());
    at::Tensor xc = x.contiguous(), wc = weight.contiguous();
    const int64_t hidden = xc.size(-1), rows = xc.numel() / hidden;
    at::Tensor y = at::empty_like(xc, at::MemoryFormat::Contiguous);
    at::Tensor rstd = at::empty({rows}, xc.options().dtype(at::kFloat));
    RmsNormForward(KernelDtype(xc.scalar_type()), xc.const_data_ptr(), wc.const_data_ptr(), y.mutable_data_ptr(),
                   rstd.mutable_data_ptr<float>(), rows, hidden, static_cast<float>(eps), Stream());
    ctx->save_for_backward({xc, wc, rstd});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor dy = GradOrZeros(grads[0], x);
    const int64_t hidden = x.size(-1), rows = x.numel() / hidden;
    at::Tensor dx = at::empty_like(x, at::MemoryFormat::Contiguous);
    at::Tensor dw, partial;
    int64_t blocks = 0;
    if (ctx->needs_input_grad(1)) {
      blocks = RmsNormBackwardBlocks(rows, at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
      partial = at::empty({blocks, hidden}, x.options().dtype(at::kFloat));
      dw = at::empty_like(w, at::MemoryFormat::Contiguous);
    }
    RmsNormBackward(KernelDtype(x.scalar_type()), dy.const_data_ptr(), x.const_data_ptr(), w.const_data_ptr(),
                    rstd.const_data_ptr<float>(), dx.mutable_data_ptr(),
                    dw.defined() ? dw.mutable_data_ptr() : nullptr,
                    partial.defined() ? partial.mutable_data_ptr<float>() : nullptr, blocks, rows, hidden,
                    Stream());
    return {dx, dw, at::Tensor()};
  }
};

RopeArgs BaseRopeArgs(const at::Tensor& like, const at::Tensor& positions, const at::Tensor& inv_freq,
                      int64_t tokens, int64_t q_heads, int64_t kv_heads, int64_t head_dim, bool inverse) {
  RopeArgs a;
  a.positions = positions.const_data_ptr<int64_t>();
  a.inv_freq = inv_freq.const_data_ptr<float>();
  a.tokens = tokens;
  a.q_heads = q_heads;
  a.kv_heads = kv_heads;
  a.head_dim = head_dim;
  a.inverse = inverse;
  a.dtype = KernelDtype(like.scalar_type());
  return a;
}

struct RopeFn : torch::autograd::Function<RopeFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& positions, const at::Tensor& inv_freq) {
    c10::cuda::CUDAGuard guard(q.device());
    const at::Tensor qi = RowsOfHeads(q), ki = RowsOfHeads(k);
    const int64_t t = q.size(0), d = q.size(2);
    at::Tensor qo = at::empty(q.sizes(), q.options()), ko = at::empty(k.sizes(), k.options());
    RopeArgs a = BaseRopeArgs(q, positions, inv_freq, t, q.size(1), k.size(1), d, /*inverse=*/false);
    a.q = qi.const_data_ptr();
    a.q_stride = qi.stride(0);
    a.k = ki.const_data_ptr();
    a.k_stride = ki.stride(0);
    a.q_out = qo.mutable_data_ptr();
    a.q_out_stride = q.size(1) * d;
    a.k_out = ko.mutable_data_ptr();
    a.k_out_stride = k.size(1) * d;
    Rope(a, Stream());
    ctx->save_for_backward({positions, inv_freq});
    return {qo, ko};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &positions = saved[0], &inv_freq = saved[1];
    c10::cuda::CUDAGuard guard(positions.device());
    // Shapes come from the grads (autograd materialises unused outputs' grads as zeros).
    const at::Tensor gq = grads[0].contiguous(), gk = grads[1].contiguous();
    const int64_t t = gq.size(0), d = gq.size(2);
    at::Tensor dq = at::empty_like(gq), dk = at::empty_like(gk);
    RopeArgs a = BaseRopeArgs(gq, positions, inv_freq, t, gq.size(1), gk.size(1), d, /*inverse=*/true);
    a.q = gq.const_data_ptr();
    a.q_stride = gq.size(1) * d;
    a.k = gk.const_data_ptr();
    a.k_stride = gk.size(1) * d;
    a.q_out = dq.mutable_data_ptr();
    a.q_out_stride = gq.size(1) * d;
    a.k_out = dk.mutable_data_ptr();
    a.k_out_stride = gk.size(1) * d;
    Rope(a, Stream());
    return {dq, dk, at::Tensor(), at::Tensor()};
  }
};

struct QkvRopeFn : torch::autograd::Function<QkvRopeFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& qkv, const at::Tensor& positions,
                               const at::Tensor& inv_freq, int64_t hq, int64_t hkv, int64_t d) {
    c10::cuda::CUDAGuard guard(qkv.device());
    const at::Tensor in = qkv.stride(1) == 1 ? qkv : qkv.contiguous();
    const int64_t t = in.size(0);
    at::Tensor q = at::empty({t, hq, d}, in.options()), k = at::empty({t, hkv, d}, in.options()),
               v = at::empty({t, hkv, d}, in.options());
    RopeArgs a = BaseRopeArgs(in, positions, inv_freq, t, hq, hkv, d, /*inverse=*/false);
    a.q = At(in, 0);
    a.k = At(in, hq * d);
    a.v = At(in, (hq + hkv) * d);
    a.q_stride = a.k_stride = a.v_stride = in.stride(0);
    a.q_out = q.mutable_data_ptr();
    a.k_out = k.mutable_data_ptr();
    a.v_out = v.mutable_data_ptr();
    a.q_out_stride = hq * d;
    a.k_out_stride = a.v_out_stride = hkv * d;
    Rope(a, Stream());
    ctx->save_for_backward({positions, inv_freq});
    return {q, k, v};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &positions = saved[0], &inv_freq = saved[1];
    c10::cuda::CUDAGuard guard(positions.device());
    const at::Tensor gq = grads[0].contiguous(), gk = grads[1].contiguous(), gv = grads[2].contiguous();
    const int64_t t = gq.size(0), hq = gq.size(1), hkv = gk.size(1), d = gq.size(2);
    at::Tensor dqkv = at::empty({t, (hq + 2 * hkv) * d}, gq.options());
    RopeArgs a = BaseRopeArgs(gq, positions, inv_freq, t, hq, hkv, d, /*inverse=*/true);
    a.q = gq.const_data_ptr();
    a.k = gk.const_data_ptr();
    a.v = gv.const_data_ptr();
    a.q_stride = hq * d;
    a.k_stride = a.v_stride = hkv * d;
    a.q_out = MutAt(dqkv, 0);
    a.k_out = MutAt(dqkv, hq * d);
    a.v_out = MutAt(dqkv, (hq + hkv) * d);
    a.q_out_stride = a.k_out_stride = a.v_out_stride = dqkv.stride(0);
    Rope(a, Stream());
    return {dqkv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct SwiGluFn : torch::autograd::Function<SwiGluFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate_up) {
    c10::cuda::CUDAGuard guard(gate_up.device());
    const at::Tensor gu = gate_up.contiguous();
    const int64_t inter = gu.size(-1) / 2, rows = inter == 0 ? 0 : gu.numel() / (2 * inter);
    std::vector<int64_t> shape = gu.sizes().vec();
    shape.back() = inter;
    at::Tensor out = at::empty(shape, gu.options());
    SwiGluForward(KernelDtype(gu.scalar_type()), gu.const_data_ptr(), out.mutable_data_ptr(), rows, inter, Stream());
    ctx->save_for_backward({gu});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor gu = ctx->get_saved_variables()[0];
    c10::cuda::CUDAGuard guard(gu.device());
    const int64_t inter = gu.size(-1) / 2, rows = inter == 0 ? 0 : gu.numel() / (2 * inter);
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dgu = at::empty_like(gu, at::MemoryFormat::Contiguous);
    SwiGluBackward(KernelDtype(gu.scalar_type()), dy.const_data_ptr(), gu.const_data_ptr(), dgu.mutable_data_ptr(), rows, inter,
                   Stream());
    return {dgu};
  }
};

void CheckRopeTables(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                     int64_t head_dim) {
  TORCH_CHECK(head_dim > 0 && head_dim % 2 == 0, "fused RoPE: head_dim ", head_dim, " must be even");
  TORCH_CHECK(positions.dim() == 1 && positions.size(0) == x.size(0), "fused RoPE: positions must be [T] with T=",
              x.size(0), ", got ", positions.sizes());
  TORCH_CHECK(inv_freq.numel() == head_dim / 2, "fused RoPE: inv_freq has ", inv_freq.numel(),
              " values for head_dim ", head_dim);
}

}  // namespace

bool UseFusedLayerOps(const at::Tensor& x) {
  return x.defined() && x.is_cuda() && (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf) &&
         FusedLayerOpsEnabled();
}

bool FusedRmsNormSupports(const at::Tensor& x, const at::Tensor& weight) {
  return x.is_cuda() && x.dim() >= 1 && x.size(-1) >= 1 && x.size(-1) <= kMaxRmsNormHidden && weight.dim() == 1 &&
         weight.size(0) == x.size(-1) && weight.device() == x.device() && weight.scalar_type() == x.scalar_type();
}

at::Tensor FusedRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(FusedRmsNormSupports(x, weight), "FusedRmsNorm: x ", x.sizes(), " ", x.scalar_type(), " on ",
              x.device(), " and weight ", weight.sizes(), " ", weight.scalar_type(), " on ", weight.device(),
              " need CUDA, one dtype and device, weight [hidden], hidden in 1..", kMaxRmsNormHidden);
  return RmsNormFn::apply(x, weight, eps);
}

std::array<at::Tensor, 2> FusedRope(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions,
                                    const at::Tensor& inv_freq) {
  TORCH_CHECK(q.is_cuda() && q.dim() == 3 && k.dim() == 3 && k.size(0) == q.size(0) && k.size(2) == q.size(2) &&
                  k.device() == q.device() && k.scalar_type() == q.scalar_type(),
              "FusedRope: q ", q.sizes(), " and k ", k.sizes(), " must be CUDA [T, H, D] of one dtype and device");
  CheckRopeTables(q, positions, inv_freq, q.size(2));
  variable_list out = RopeFn::apply(q, k, positions.to(q.device(), at::kLong).contiguous(),
                                    inv_freq.to(q.device(), at::kFloat).contiguous());
  return {out[0], out[1]};
}

std::array<at::Tensor, 3> FusedQkvRope(const at::Tensor& qkv, const at::Tensor& positions,
                                       const at::Tensor& inv_freq, int64_t q_heads, int64_t kv_heads,
                                       int64_t head_dim) {
  TORCH_CHECK(qkv.is_cuda() && qkv.dim() == 2 && q_heads > 0 && kv_heads >= 0 &&
                  qkv.size(1) == (q_heads + 2 * kv_heads) * head_dim,
              "FusedQkvRope: qkv ", qkv.sizes(), " is not a CUDA [T, (", q_heads, " + 2 * ", kv_heads, ") * ",
              head_dim, "] projection");
  CheckRopeTables(qkv, positions, inv_freq, head_dim);
  variable_list out = QkvRopeFn::apply(qkv, positions.to(qkv.device(), at::kLong).contiguous(),
                                       inv_freq.to(qkv.device(), at::kFloat).contiguous(), q_heads, kv_heads,
                                       head_dim);
  return {out[0], out[1], out[2]};
}

at::Tensor FusedSwiGlu(const at::Tensor& gate_up) {
  TORCH_CHECK(gate_up.is_cuda() && gate_up.dim() >= 1 && gate_up.size(-1) % 2 == 0,
              "FusedSwiGlu: gate_up must be a CUDA [..., 2 I] tensor, got ", gate_up.sizes());
  return SwiGluFn::apply(gate_up);
}

}  // namespace tidal::cuda
#endif
