// TokenLogprobsFromHidden (declared in core/model.h): chunked log-softmax + gather with a custom
// backward, in its own translation unit because the autograd Function header is expensive.
//
// Why a custom Function: with plain ops, autograd would keep every chunk's [chunk, V] fp32
// log-softmax alive until backward, which is exactly the full [T, V] matrix chunking is meant to
// avoid. Here forward keeps only the per-row log-sum-exp [T]; backward recomputes each chunk's
// logits, so peak extra memory is one [chunk, V] fp32 block in either direction.
#include <torch/csrc/autograd/custom_function.h>

#include "core/model.h"

namespace tidal {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor ChunkLogits(const at::Tensor& h, const at::Tensor& lm_head, double temperature) {
  // Matmul in the weights' dtype (as HF's lm_head), softmax statistics in fp32.
  at::Tensor logits = at::matmul(h, lm_head.t()).to(at::kFloat);
  return temperature == 1.0 ? logits : logits / temperature;
}

struct ChunkedTokenLogprobs : public torch::autograd::Function<ChunkedTokenLogprobs> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden,
                            const at::Tensor& lm_head, const at::Tensor& targets,
                            double temperature, int64_t chunk) {
    const int64_t t = hidden.size(0);
    at::Tensor out = at::empty({t}, hidden.options().dtype(at::kFloat));
    at::Tensor lse = at::empty({t}, hidden.options().dtype(at::kFloat));
    for (int64_t s = 0; s < t; s += chunk) {
      const int64_t n = std::min(chunk, t - s);
      at::Tensor logits = ChunkLogits(hidden.narrow(0, s, n), lm_head, temperature);
      at::Tensor l = at::logsumexp(logits, -1);
      at::Tensor picked = logits.gather(1, targets.narrow(0, s, n).unsqueeze(1)).squeeze(1);
      out.narrow(0, s, n).copy_(picked - l);
      lse.narrow(0, s, n).copy_(l);
    }
    ctx->save_for_backward({hidden, lm_head, targets, lse});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunk"] = chunk;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& hidden = saved[0];
    const at::Tensor& lm_head = saved[1];
    const at::Tensor& targets = saved[2];
    const at::Tensor& lse = saved[3];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    at::Tensor g = grad_outputs[0].to(at::kFloat);
    const bool want_h = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    const int64_t t = hidden.size(0);
    at::Tensor grad_h = want_h ? at::empty_like(hidden) : at::Tensor();
    // Accumulated over chunks in fp32 so bf16 weights do not lose the small per-chunk terms.
    at::Tensor grad_w = want_w ? at::zeros(lm_head.sizes(), lm_head.options().dtype(at::kFloat))
                               : at::Tensor();
    for (int64_t s = 0; s < t; s += chunk) {
      const int64_t n = std::min(chunk, t - s);
      at::Tensor h = hidden.narrow(0, s, n);
      at::Tensor gc = g.narrow(0, s, n).unsqueeze(1);
      // d logprob[target] / d logits = onehot(target) - softmax.
      at::Tensor p = (ChunkLogits(h, lm_head, temperature) - lse.narrow(0, s, n).unsqueeze(1)).exp_();
      at::Tensor grad_logits = p.mul_(-gc);
      grad_logits.scatter_add_(1, targets.narrow(0, s, n).unsqueeze(1), gc);
      if (temperature != 1.0) grad_logits.div_(temperature);
      at::Tensor gl = grad_logits.to(lm_head.scalar_type());
      if (want_h) grad_h.narrow(0, s, n).copy_(at::matmul(gl, lm_head));
      if (want_w) grad_w.add_(at::matmul(gl.t(), h.to(lm_head.scalar_type())));
    }
    return {grad_h, want_w ? grad_w.to(lm_head.scalar_type()) : at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor TokenLogprobsFromHidden(const at::Tensor& hidden, const at::Tensor& lm_head,
                                   const at::Tensor& targets, double temperature,
                                   int64_t chunk_tokens) {
  TORCH_CHECK(hidden.dim() == 2, "hidden must be [T, hidden], got ", hidden.sizes());
  TORCH_CHECK(lm_head.dim() == 2 && lm_head.size(1) == hidden.size(1), "lm_head ", lm_head.sizes(),
              " does not match hidden ", hidden.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0), "targets must be [T] with T=",
              hidden.size(0), ", got ", targets.sizes());
  TORCH_CHECK(temperature > 0, "temperature must be positive, got ", temperature);
  TORCH_CHECK(chunk_tokens > 0, "chunk_tokens must be positive, got ", chunk_tokens);
  if (targets.device().is_cpu() && targets.numel() > 0) {
    const int64_t lo = targets.min().item<int64_t>(), hi = targets.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < lm_head.size(0), "target ids must lie in [0, ", lm_head.size(0),
                "), found range [", lo, ", ", hi, "]");
  }
  return ChunkedTokenLogprobs::apply(hidden, lm_head, targets.to(at::kLong), temperature,
                                     chunk_tokens);
}

}  // namespace tidal
