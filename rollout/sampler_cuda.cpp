// Sample() for logits on a CUDA device: the rollout/cuda/sampling.cu kernel (see sampler.h).
#ifdef TIDAL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>

#include "core/cuda/kernel_dtype.h"
#include "rollout/cuda/kernels.h"
#include "rollout/sampler.h"

namespace tidal::rollout {

SampleResult SampleOnDevice(const at::Tensor& logits_in, std::span<const SampleRow> rows) {
  const int64_t r = logits_in.size(0), v = logits_in.size(1);
  SampleResult out;
  out.tokens.resize(r);
  out.logprobs.resize(r);
  if (r == 0) return out;
  c10::cuda::CUDAGuard guard(logits_in.device());
  // The kernel reads fp32, fp16 and bf16 logits as they are (widening is exact); other dtypes
  // are converted first.
  const bool native = tidal::cuda::KernelSupports(logits_in.scalar_type());
  at::Tensor logits = (native ? logits_in : logits_in.to(at::kFloat)).contiguous();
  const cuda::Dtype dtype = tidal::cuda::KernelDtype(logits.scalar_type());
  std::vector<cuda::SampleRowParams> params(r);
  for (int64_t i = 0; i < r; ++i) {
    const SamplingParams& p = *rows[i].params;
    cuda::SampleRowParams& q = params[i];
    q.greedy = p.Greedy() ? 1 : 0;
    q.inv_temperature = p.Greedy() ? 1.0f : static_cast<float>(1.0 / p.temperature);
    q.top_p = static_cast<float>(p.top_p);
    q.min_p = static_cast<float>(p.min_p);
    q.top_k = p.top_k > 0 && p.top_k < v ? static_cast<int32_t>(p.top_k) : 0;
    q.seed = rows[i].seed;
    q.token_index = rows[i].token_index;
  }
  const int64_t bytes = r * static_cast<int64_t>(sizeof(cuda::SampleRowParams));
  at::Tensor host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), params.data(), bytes);
  at::Tensor dev = host.to(logits.device(), /*non_blocking=*/true);
  // tokens (int32) then logprobs (fp32) in one buffer: one copy back.
  at::Tensor result = at::empty({2 * r}, logits.options().dtype(at::kInt));
  int32_t* tokens = result.data_ptr<int32_t>();
  cuda::SampleRows(dtype, logits.data_ptr(), r, v,
                   reinterpret_cast<const cuda::SampleRowParams*>(dev.data_ptr()), tokens,
                   reinterpret_cast<float*>(tokens + r), at::cuda::getCurrentCUDAStream().stream());
  at::Tensor back = result.cpu();
  const int32_t* h = back.data_ptr<int32_t>();
  std::memcpy(out.tokens.data(), h, r * sizeof(int32_t));
  std::memcpy(out.logprobs.data(), h + r, r * sizeof(float));
  return out;
}

}  // namespace tidal::rollout
#endif  // TIDAL_WITH_CUDA
