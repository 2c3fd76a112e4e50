#include "trainer/token_head.h"

#ifdef TIDAL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "core/cuda/kernel_dtype.h"
#include "trainer/cuda/token_head_kernels.h"
#endif

namespace tidal::trainer {
namespace {

void CheckArgs(const at::Tensor& logits, const at::Tensor& targets) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous(), "token head: logits must be contiguous [n, V], got ",
              logits.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0) && targets.scalar_type() == at::kLong,
              "token head: targets must be int64 [", logits.size(0), "], got ", targets.sizes(), " ",
              targets.scalar_type());
  TORCH_CHECK(targets.device() == logits.device(), "token head: targets on ", targets.device(), ", logits on ",
              logits.device());
}

bool OnKernels(const at::Tensor& logits) {
#ifdef TIDAL_WITH_CUDA
  return logits.is_cuda() && tidal::cuda::KernelSupports(logits.scalar_type());
#else
  return false;
#endif
}

at::Tensor ScaledFloat(const at::Tensor& logits, double temperature) {
  at::Tensor z = logits.to(at::kFloat);
  return temperature != 1.0 ? z / temperature : z;
}

}  // namespace

HeadStats TokenHeadForward(const at::Tensor& logits, const at::Tensor& targets, double temperature,
                           bool with_entropy) {
  CheckArgs(logits, targets);
  TORCH_CHECK(temperature > 0, "token head: temperature must be > 0, got ", temperature);
  const int64_t n = logits.size(0);
  HeadStats out;
  auto f32 = logits.options().dtype(at::kFloat);
  if (OnKernels(logits)) {
#ifdef TIDAL_WITH_CUDA
    c10::cuda::CUDAGuard guard(logits.device());
    out.logprobs = at::empty({n}, f32);
    out.lse = at::empty({n}, f32);
    if (with_entropy) out.entropy = at::empty({n}, f32);
    at::Tensor t = targets.contiguous();
    cuda::TokenHeadStats(tidal::cuda::KernelDtype(logits.scalar_type()), logits.data_ptr(), t.data_ptr<int64_t>(), n,
                         logits.size(1), static_cast<float>(1.0 / temperature), out.logprobs.data_ptr<float>(),
                         out.lse.data_ptr<float>(), with_entropy ? out.entropy.data_ptr<float>() : nullptr,
                         c10::cuda::getCurrentCUDAStream(logits.device().index()).stream());
#endif
    return out;
  }
  at::Tensor z = ScaledFloat(logits, temperature);
  out.lse = at::logsumexp(z, -1);
  out.logprobs = z.gather(1, targets.unsqueeze(1)).squeeze(1) - out.lse;
  if (with_entropy) {
    at::Tensor d = z - out.lse.unsqueeze(1);
    out.entropy = -(d.exp() * d).sum(-1);
  }
  return out;
}

void TokenHeadBackwardInPlace(at::Tensor& logits, const at::Tensor& targets, const HeadStats& stats,
                              const at::Tensor& g_lp, const at::Tensor& g_ent, double temperature) {
  CheckArgs(logits, targets);
  const int64_t n = logits.size(0);
  TORCH_CHECK(stats.lse.defined() && stats.lse.numel() == n && g_lp.defined() && g_lp.numel() == n,
              "token head backward: lse and g_lp must hold ", n, " rows");
  TORCH_CHECK(!g_ent.defined() || (g_ent.numel() == n && stats.entropy.defined() && stats.entropy.numel() == n),
              "token head backward: an entropy gradient needs the forward's entropy (", n, " rows)");
  if (OnKernels(logits)) {
#ifdef TIDAL_WITH_CUDA
    c10::cuda::CUDAGuard guard(logits.device());
    auto f = [&](const at::Tensor& t) { return t.to(logits.device(), at::kFloat).contiguous(); };
    at::Tensor lse = f(stats.lse), glp = f(g_lp), t = targets.contiguous();
    at::Tensor ent = g_ent.defined() ? f(stats.entropy) : at::Tensor();
    at::Tensor gent = g_ent.defined() ? f(g_ent) : at::Tensor();
    cuda::TokenHeadGrad(tidal::cuda::KernelDtype(logits.scalar_type()), logits.data_ptr(), t.data_ptr<int64_t>(), n,
                        logits.size(1), static_cast<float>(1.0 / temperature), lse.data_ptr<float>(),
                        ent.defined() ? ent.data_ptr<float>() : nullptr, glp.data_ptr<float>(),
                        gent.defined() ? gent.data_ptr<float>() : nullptr,
                        c10::cuda::getCurrentCUDAStream(logits.device().index()).stream());
#endif
    return;
  }
  at::Tensor d = ScaledFloat(logits, temperature) - stats.lse.to(at::kFloat).unsqueeze(1);  // log p
  at::Tensor p = d.exp();
  const at::Tensor glp = g_lp.to(at::kFloat).unsqueeze(1);
  at::Tensor g = p * -glp;
  if (g_ent.defined()) g -= g_ent.to(at::kFloat).unsqueeze(1) * p * (d + stats.entropy.to(at::kFloat).unsqueeze(1));
  g.scatter_add_(1, targets.unsqueeze(1), glp);
  if (temperature != 1.0) g /= temperature;
  logits.copy_(g);
}

ChunkedHead::ChunkedHead(at::Tensor rows, at::Tensor weight, at::Tensor targets, double temperature,
                         int64_t chunk_rows, int64_t keep_bytes)
    : rows_(rows.detach()), weight_(weight.detach()), targets_(std::move(targets)), temperature_(temperature) {
  TORCH_CHECK(rows_.dim() == 2 && weight_.dim() == 2 && rows_.size(1) == weight_.size(1),
              "lm head: rows [K, H] and weight [V, H] disagree: ", rows_.sizes(), " vs ", weight_.sizes());
  TORCH_CHECK(targets_.dim() == 1 && targets_.size(0) == rows_.size(0), "lm head: ", rows_.size(0),
              " rows but ", targets_.sizes(), " targets");
  const int64_t k = rows_.size(0);
  chunk_rows_ = std::max<int64_t>(1, chunk_rows);
  if (!rows_.is_cuda()) {
    // The CPU statistics run as ATen ops on fp32 copies of a chunk, a few alive at once: keep one
    // [rows, V] fp32 copy within 512 MiB (1024 rows of a 128k vocabulary), as the kernels need none.
    const int64_t cap = (int64_t{512} << 20) / (std::max<int64_t>(1, weight_.size(0)) * 4);
    chunk_rows_ = std::min(chunk_rows_, std::max<int64_t>(1, cap));
  }
  chunks_ = (k + chunk_rows_ - 1) / chunk_rows_;
  const int64_t logits_bytes = k * weight_.size(0) * static_cast<int64_t>(rows_.element_size());
  keep_ = logits_bytes <= keep_bytes;
}

int64_t ChunkedHead::Rows(int64_t c) const { return std::min(chunk_rows_, rows_.size(0) - c * chunk_rows_); }

at::Tensor ChunkedHead::Logits(int64_t c) const {
  return at::mm(rows_.narrow(0, c * chunk_rows_, Rows(c)), weight_.t());
}

std::pair<at::Tensor, at::Tensor> ChunkedHead::Forward(bool with_entropy) {
  const int64_t k = rows_.size(0);
  auto f32 = rows_.options().dtype(at::kFloat);
  at::Tensor logprobs = at::empty({k}, f32);
  at::Tensor entropy = with_entropy ? at::empty({k}, f32) : at::Tensor();
  kept_.clear();
  stats_.clear();
  for (int64_t c = 0; c < chunks_; ++c) {
    at::Tensor logits = Logits(c);
    HeadStats st = TokenHeadForward(logits, targets_.narrow(0, c * chunk_rows_, Rows(c)), temperature_, with_entropy);
    logprobs.narrow(0, c * chunk_rows_, Rows(c)).copy_(st.logprobs);
    if (with_entropy) entropy.narrow(0, c * chunk_rows_, Rows(c)).copy_(st.entropy);
    if (keep_) kept_.push_back(std::move(logits));
    stats_.push_back(std::move(st));
  }
  return {logprobs, entropy};
}

at::Tensor ChunkedHead::Backward(const at::Tensor& g_lp, const at::Tensor& g_ent, at::Tensor* grad_weight) {
  TORCH_CHECK(static_cast<int64_t>(stats_.size()) == chunks_, "lm head: Backward before Forward");
  at::Tensor grad_rows = at::empty_like(rows_);
  for (int64_t c = 0; c < chunks_; ++c) {
    const int64_t s = c * chunk_rows_, n = Rows(c);
    at::Tensor g = keep_ ? std::move(kept_[c]) : Logits(c);
    TokenHeadBackwardInPlace(g, targets_.narrow(0, s, n), stats_[c], g_lp.narrow(0, s, n),
                             g_ent.defined() ? g_ent.narrow(0, s, n) : at::Tensor(), temperature_);
    at::Tensor rows_c = rows_.narrow(0, s, n);
    at::Tensor grad_rows_c = grad_rows.narrow(0, s, n);
    at::mm_out(grad_rows_c, g, weight_);
    if (grad_weight->defined()) {
      grad_weight->addmm_(g.t(), rows_c);
    } else {
      *grad_weight = at::mm(g.t(), rows_c);
    }
  }
  kept_.clear();
  return grad_rows;
}

}  // namespace tidal::trainer
