#include "trainer/rollout_correction.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tidal::trainer {

absl::StatusOr<IsCorrection> ParseIsCorrection(const std::string& name) {
  if (name == "none" || name.empty()) return IsCorrection::kNone;
  if (name == "tis") return IsCorrection::kTis;
  if (name == "mis") return IsCorrection::kMis;
  return absl::InvalidArgumentError(absl::StrCat("unknown IS correction '", name, "': expected none, tis or mis"));
}

void MismatchStats::Add(const MismatchStats& o) {
  tokens += o.tokens;
  kl_sum += o.kl_sum;
  max_abs_diff = std::max(max_abs_diff, o.max_abs_diff);
  weight_sum += o.weight_sum;
  masked_tokens += o.masked_tokens;
}

at::Tensor MismatchKl(const at::Tensor& trainer_logprobs, const at::Tensor& rollout_logprobs) {
  at::Tensor d = trainer_logprobs.detach().to(at::kFloat) - rollout_logprobs.detach().to(at::kFloat);
  return at::exp(d) - d - 1.0;
}

at::Tensor ImportanceWeights(const at::Tensor& trainer_logprobs, const at::Tensor& rollout_logprobs,
                             const at::Tensor& mask, IsCorrection kind, double cap, MismatchStats* stats) {
  TORCH_CHECK(trainer_logprobs.numel() == rollout_logprobs.numel() && mask.numel() == rollout_logprobs.numel(),
              "ImportanceWeights: trainer ", trainer_logprobs.numel(), ", rollout ", rollout_logprobs.numel(),
              " and mask ", mask.numel(), " token counts differ");
  TORCH_CHECK(kind == IsCorrection::kNone || cap > 0, "ImportanceWeights: cap must be positive, got ", cap);
  const at::Tensor m = mask.detach().to(at::kFloat);
  const at::Tensor d = trainer_logprobs.detach().to(at::kFloat) - rollout_logprobs.detach().to(at::kFloat);
  const at::Tensor ratio = at::exp(d);
  at::Tensor w;
  at::Tensor dropped;
  switch (kind) {
    case IsCorrection::kNone: w = at::ones_like(ratio); break;
    case IsCorrection::kTis: w = at::clamp_max(ratio, cap); break;
    case IsCorrection::kMis:
      dropped = ratio > cap;
      w = at::where(dropped, at::zeros_like(ratio), ratio);
      break;
  }
  if (stats != nullptr) {
    MismatchStats s;
    s.tokens = m.sum().item<double>();
    s.kl_sum = ((ratio - d - 1.0) * m).sum().item<double>();
    s.max_abs_diff = s.tokens > 0 ? (d.abs() * m).max().item<double>() : 0.0;
    s.weight_sum = (w * m).sum().item<double>();
    s.masked_tokens = dropped.defined() ? (dropped.to(at::kFloat) * m).sum().item<double>() : 0.0;
    stats->Add(s);
  }
  return w * m;
}

}  // namespace tidal::trainer
