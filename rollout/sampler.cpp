#include "rollout/sampler.h"

#include <algorithm>

#include "core/hash.h"

namespace tidal::rollout {

double UniformForToken(uint64_t seed, int64_t index) {
  const uint64_t bits =
      SplitMix64(SplitMix64(seed) ^ SplitMix64(static_cast<uint64_t>(index) + 0x5851f42d4c957f2dULL));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

namespace {

// OpenAI-style top_logprobs: each row's params.top_logprobs most likely tokens of `logprobs`
// (the returned distribution, [R, V]); nothing when no row asks.
void AddTopLogprobs(const at::Tensor& logprobs, std::span<const SampleRow> rows, SampleResult* out) {
  int64_t max_top = 0;
  for (const SampleRow& row : rows) max_top = std::max<int64_t>(max_top, row.params->top_logprobs);
  if (max_top <= 0) return;
  const int64_t r = logprobs.size(0);
  max_top = std::min(max_top, logprobs.size(1));
  auto [top_v, top_i] = logprobs.topk(max_top, /*dim=*/1, /*largest=*/true, /*sorted=*/true);
  top_v = top_v.to(at::kCPU, at::kFloat).contiguous();
  top_i = top_i.cpu().contiguous();
  out->top.assign(r, {});
  for (int64_t i = 0; i < r; ++i) {
    const int64_t k = std::min<int64_t>(rows[i].params->top_logprobs, max_top);
    for (int64_t j = 0; j < k; ++j) {
      out->top[i].push_back({static_cast<int32_t>(top_i.data_ptr<int64_t>()[i * max_top + j]),
                             top_v.data_ptr<float>()[i * max_top + j]});
    }
  }
}

}  // namespace

SampleResult Sample(const at::Tensor& logits_in, std::span<const SampleRow> rows) {
  TORCH_CHECK(logits_in.dim() == 2 && logits_in.size(0) == std::ssize(rows),
              "Sample: logits must be [R, V] with R = ", rows.size(), " rows, got ",
              logits_in.sizes());
#ifdef TIDAL_WITH_CUDA
  if (logits_in.is_cuda()) {
    SampleResult out = SampleOnDevice(logits_in, rows);
    bool any_top = false;
    for (const SampleRow& row : rows) any_top |= row.params->top_logprobs > 0;
    if (any_top) {  // rare (OpenAI top_logprobs): computed apart from the sampling kernel
      std::vector<float> inv_t;
      for (const SampleRow& row : rows) {
        inv_t.push_back(row.params->Greedy() ? 1.0f : static_cast<float>(1.0 / row.params->temperature));
      }
      at::Tensor logits = logits_in.to(at::kFloat);
      at::Tensor inv = at::tensor(inv_t, logits.options()).unsqueeze(1);
      AddTopLogprobs(at::log_softmax(logits * inv, /*dim=*/1), rows, &out);
    }
    return out;
  }
#endif
  const int64_t r = logits_in.size(0), v = logits_in.size(1);
  SampleResult out;
  out.tokens.resize(r);
  out.logprobs.resize(r);
  if (r == 0) return out;
  at::Tensor logits = logits_in.to(at::kFloat);
  std::vector<float> inv_t(r);
  std::vector<int64_t> sampled_rows;
  for (int64_t i = 0; i < r; ++i) {
    const SamplingParams& p = *rows[i].params;
    inv_t[i] = p.Greedy() ? 1.0f : static_cast<float>(1.0 / p.temperature);
    if (!p.Greedy()) sampled_rows.push_back(i);
  }
  at::Tensor inv = at::tensor(inv_t, logits.options()).unsqueeze(1);
  at::Tensor logprobs = at::log_softmax(logits * inv, /*dim=*/1);  // the returned distribution

  std::vector<int64_t> tokens(r);
  at::Tensor argmax = logits.argmax(1).cpu();
  for (int64_t i = 0; i < r; ++i) tokens[i] = argmax.data_ptr<int64_t>()[i];

  if (!sampled_rows.empty()) {
    const int64_t s = std::ssize(sampled_rows);
    std::vector<int64_t> top_k(s);
    std::vector<double> top_p(s), min_p(s), u(s);
    bool any_top_p = false, any_min_p = false, any_top_k = false;
    for (int64_t j = 0; j < s; ++j) {
      const SampleRow& row = rows[sampled_rows[j]];
      const SamplingParams& p = *row.params;
      top_k[j] = p.top_k > 0 ? std::min<int64_t>(p.top_k, v) : v;
      top_p[j] = p.top_p < 1.0 ? p.top_p : 2.0;  // off: no rounding can drop a tail token
      min_p[j] = p.min_p;
      u[j] = UniformForToken(row.seed, row.token_index);
      any_top_k |= top_k[j] < v;
      any_top_p |= p.top_p < 1.0;
      any_min_p |= p.min_p > 0.0;
    }
    auto dopt = logits.options().dtype(at::kDouble);
    at::Tensor idx = at::tensor(sampled_rows, logits.options().dtype(at::kLong));
    at::Tensor probs = logprobs.index_select(0, idx).exp().to(at::kDouble);
    // Stable descending sort: equal probabilities keep ascending token ids.
    auto [sorted, order] = probs.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true);
    at::Tensor keep = at::ones_like(sorted, sorted.options().dtype(at::kBool));
    if (any_top_k) {
      at::Tensor rank = at::arange(v, order.options()).unsqueeze(0);
      keep = keep & (rank < at::tensor(top_k, order.options()).unsqueeze(1));
    }
    if (any_top_p) {
      at::Tensor kept = sorted * keep;
      at::Tensor norm = kept / kept.sum(1, /*keepdim=*/true);
      at::Tensor before = norm.cumsum(1) - norm;  // mass strictly before each token
      keep = keep & (before < at::tensor(top_p, dopt).unsqueeze(1));
    }
    if (any_min_p) {
      at::Tensor pmax = sorted.narrow(1, 0, 1);
      keep = keep & (sorted >= at::tensor(min_p, dopt).unsqueeze(1) * pmax);
    }
    // The most likely token always survives, so every row keeps some mass.
    keep.narrow(1, 0, 1).fill_(true);
    at::Tensor cdf = (sorted * keep).cumsum(1);
    at::Tensor target = at::tensor(u, dopt).unsqueeze(1) * cdf.narrow(1, v - 1, 1);
    at::Tensor pos = at::searchsorted(cdf, target, /*out_int32=*/false, /*right=*/true)
                         .clamp_max(v - 1);
    at::Tensor chosen = order.gather(1, pos).squeeze(1).cpu();
    for (int64_t j = 0; j < s; ++j) tokens[sampled_rows[j]] = chosen.data_ptr<int64_t>()[j];
  }

  AddTopLogprobs(logprobs, rows, &out);

  at::Tensor tok = at::tensor(tokens, logits.options().dtype(at::kLong));
  at::Tensor lp = logprobs.gather(1, tok.unsqueeze(1)).squeeze(1).cpu().contiguous();
  for (int64_t i = 0; i < r; ++i) {
    out.tokens[i] = static_cast<int32_t>(tokens[i]);
    out.logprobs[i] = lp.data_ptr<float>()[i];
  }
  return out;
}

StopCheck CheckStop(const SamplingParams& params, std::span<const int32_t> output,
                    std::span<const int32_t> eos_ids, int64_t total_tokens,
                    int64_t max_model_len, const Detokenizer& detokenize) {
  StopCheck r;
  if (output.empty()) return r;
  const int32_t last = output.back();
  auto contains = [last](std::span<const int32_t> ids) {
    return std::find(ids.begin(), ids.end(), last) != ids.end();
  };
  if ((!params.ignore_eos && contains(eos_ids)) || contains(params.stop_token_ids)) {
    r.stop = true;
    return r;
  }
  if (!params.stop_strings.empty() && detokenize) {
    size_t longest = 0;
    for (const std::string& s : params.stop_strings) longest = std::max(longest, s.size());
    // A match ending in the newest token starts within the `longest - 1` bytes before it; each
    // token is at least one byte, so `longest + 1` tokens cover it with a token to spare.
    const size_t window = std::min(output.size(), longest + 1);
    const std::string text = detokenize(output.subspan(output.size() - window));
    for (const std::string& s : params.stop_strings) {
      if (text.find(s) != std::string::npos) {
        r.stop = true;
        r.stop_string = s;
        return r;
      }
    }
  }
  r.length = std::ssize(output) >= params.max_new_tokens || total_tokens >= max_model_len;
  return r;
}

}  // namespace tidal::rollout
