// `tidal bench rollout`: throughput of the rollout engine (rollout/engine.h) against a naive
// decoding loop on the same model, measured in the same run, printed as JSON.
//
// Workload (GRPO-shaped): --requests N = N / G distinct random prompts of --prompt-len tokens,
// each repeated --group-size G times with a different seed; every request samples exactly
// --max-new-tokens tokens (ignore_eos) at --temperature. --random-lengths MIN:MAX instead draws
// each request's prompt and output lengths uniformly from [MIN, MAX] (nano-vllm's workload is
// --requests 256 --group-size 1 --random-lengths 100:1024 --seed 0). Model: a random tiny Qwen2
// (--hidden, --layers, --heads, --kv-heads, --vocab) or an HF checkpoint (--model-dir, e.g. from
// tools/bench/make_random_checkpoint.py), served in --dtype (auto: bf16 on CUDA, fp32 on CPU).
//
// HF baseline (--hf-python PY, needs --model-dir and equal prompt lengths): PY runs
// tools/bench/hf_generate.py on the same checkpoint, prompts and dtype (one batched
// transformers `generate`), in the same command; its JSON lands under "hf".
//
// Roofline: a decode step must at least read every weight once and every sequence's K/V once;
// roofline_s = (steps * weight bytes + sum over steps of attended tokens * KV bytes per token)
// / --bandwidth-gbs (default 4300: the H200's measured device copy bandwidth). The JSON gives
// the fraction roofline_s / wall (whole run and decode-only steps), and where the wall time
// went: forward + sampling (device work, synchronised at each step's end), the rest of Step
// (scheduling, planning, bookkeeping on the CPU), outside Step.
//
// Naive reference: one request at a time, every token recomputed from scratch: Model::Logits
// over the whole prompt + generated prefix (no KV cache, no batching, no prefix sharing), then
// the same sampler with the same seed. It therefore generates the same tokens as the engine
// (reported as naive_outputs_match); it runs on the first --naive-requests requests only,
// since its per-token cost does not depend on how many requests there are.
//
// Timing: wall-clock and process-CPU seconds around each generation loop, after a warm-up.
// The speedup is on CPU seconds with --threads 1 (default), because on a shared machine wall
// time mostly measures the other tenants; wall figures are printed too.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/clock.h"
#include "core/model.h"
#include "rollout/engine.h"
#include "tools/cli/baseline_command.h"
#include "tools/cli/kernel_profile.h"
#include "rollout/sampler.h"
#include "tools/cli/command.h"

namespace {

using Json = nlohmann::json;
using tidal::cli::CommandOutput;
using tidal::cli::LastJsonLine;
using tidal::cli::RunCommand;
using tidal::rollout::Engine;
using tidal::rollout::EngineConfig;
using tidal::rollout::Request;
using tidal::rollout::RequestOutput;

struct Args {
  int64_t requests = 64;
  int64_t prompt_len = 64;
  int64_t max_new_tokens = 64;
  int64_t group_size = 8;
  double temperature = 1.0;
  int64_t hidden = 256, layers = 4, heads = 8, kv_heads = 2, vocab = 260;
  std::string model_dir;
  std::string device = "cpu";
  std::string dtype = "auto";
  std::string random_lengths;  // "MIN:MAX"
  std::string hf_python;
  std::string hf_script = "tools/bench/hf_generate.py";
  double bandwidth_gbs = 4300;
  double gpu_memory_utilization = 0;
  bool cuda_graphs = true;
  bool fused_layers = true;
  int threads = 1;
  int64_t block_size = 16;
  int64_t max_batch_tokens = 2048;
  int64_t max_seqs = 64;
  int64_t kv_cache_mb = 256;
  int64_t naive_requests = 4;
  uint64_t seed = 1;
  bool profile = false;
  std::string profile_trace;
};

struct Timer {
  tidal::MonoTime wall = tidal::MonoNow();
  double cpu = tidal::ProcessCpuSeconds();
  double WallS() const { return tidal::SecondsSince(wall); }
  double CpuS() const { return tidal::ProcessCpuSeconds() - cpu; }
};

std::vector<Request> Workload(const Args& a, int64_t vocab, int64_t min_len, int64_t max_len) {
  std::mt19937_64 rng(a.seed);
  std::uniform_int_distribution<int64_t> len(min_len, max_len);
  std::vector<Request> reqs;
  std::vector<int32_t> prompt;
  int64_t new_tokens = a.max_new_tokens;
  for (int64_t i = 0; i < a.requests; ++i) {
    if (i % a.group_size == 0) {
      prompt.resize(min_len > 0 ? len(rng) : a.prompt_len);
      for (auto& t : prompt) t = static_cast<int32_t>(rng() % vocab);
      if (min_len > 0) new_tokens = len(rng);
    }
    Request r;
    r.id = "req" + std::to_string(i);
    r.prompt = prompt;
    r.params.temperature = a.temperature;
    r.params.max_new_tokens = new_tokens;
    r.params.ignore_eos = true;
    r.seed = a.seed * 1000003 + i;
    reqs.push_back(std::move(r));
  }
  return reqs;
}

// The naive loop described at the top; returns the generated tokens.
std::vector<int32_t> NaiveGenerate(const tidal::Model& m, const Request& r, at::Device device) {
  c10::InferenceMode guard;
  std::vector<int64_t> ids(r.prompt.begin(), r.prompt.end());
  std::vector<int32_t> out;
  for (int64_t i = 0; i < r.params.max_new_tokens; ++i) {
    at::Tensor t = at::tensor(ids, at::kLong).to(device);
    at::Tensor cu = at::tensor(std::vector<int64_t>{0, static_cast<int64_t>(ids.size())}, at::kLong).to(device);
    at::Tensor last = m.Logits(t, cu).narrow(0, t.size(0) - 1, 1);
    tidal::rollout::SampleRow row{&r.params, *r.seed, i};
    int32_t tok = tidal::rollout::Sample(last, std::span(&row, 1)).tokens[0];
    ids.push_back(tok);
    out.push_back(tok);
  }
  return out;
}

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& s, at::Device device) {
  if (s == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (s == "float32" || s == "fp32") return at::kFloat;
  if (s == "bfloat16" || s == "bf16") return at::kBFloat16;
  if (s == "float16" || s == "fp16") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("bench rollout: --dtype '", s,
                                                 "' (auto, float32, bfloat16, float16)"));
}

const char* DtypeName(at::ScalarType t) {
  return t == at::kBFloat16 ? "bfloat16" : t == at::kHalf ? "float16" : "float32";
}

// Runs tools/bench/hf_generate.py on the same checkpoint and prompts; returns its JSON.
absl::StatusOr<Json> RunHfBaseline(const Args& a, const std::vector<Request>& reqs, at::ScalarType dtype) {
  const std::string prompts = "/tmp/tidal_bench_prompts_" + std::to_string(::getpid()) + ".json";
  {
    Json p = Json::array();
    for (const Request& r : reqs) p.push_back(r.prompt);
    std::ofstream(prompts) << p.dump();
  }
  const std::string cmd = absl::StrCat(a.hf_python, " ", a.hf_script, " --model-dir '", a.model_dir,
                                       "' --prompts ", prompts, " --max-new-tokens ", a.max_new_tokens,
                                       " --dtype ", DtypeName(dtype), " --temperature ", a.temperature);
  absl::StatusOr<CommandOutput> run = RunCommand(cmd);
  std::remove(prompts.c_str());
  if (!run.ok()) return absl::InternalError(absl::StrCat("bench rollout: ", run.status().message()));
  if (run->exit_code != 0) {
    return absl::InternalError(absl::StrCat("bench rollout: `", cmd, "` failed (", run->exit_code, "): ", run->out));
  }
  // The script's JSON is its last non-empty line (transformers may log above it).
  std::optional<Json> j = LastJsonLine(run->out);
  if (!j) return absl::InternalError(absl::StrCat("bench rollout: HF baseline printed no JSON: ", run->out));
  return *j;
}

absl::Status Run(const Args& a) {
  if (a.requests < 1 || a.group_size < 1 || a.prompt_len < 1 || a.max_new_tokens < 1) {
    return absl::InvalidArgumentError("bench rollout: --requests, --group-size, --prompt-len and --max-new-tokens must be >= 1");
  }
  int64_t min_len = 0, max_len = 0;
  if (!a.random_lengths.empty()) {
    if (std::sscanf(a.random_lengths.c_str(), "%ld:%ld", &min_len, &max_len) != 2 || min_len < 1 ||
        max_len < min_len) {
      return absl::InvalidArgumentError(absl::StrCat("bench rollout: --random-lengths '", a.random_lengths,
                                                     "' must be MIN:MAX with 1 <= MIN <= MAX"));
    }
  }
  if (!a.hf_python.empty() && (a.model_dir.empty() || min_len > 0)) {
    return absl::InvalidArgumentError("bench rollout: --hf-python needs --model-dir and fixed lengths");
  }
  at::set_num_threads(a.threads);
  at::Device device = at::kCPU;
  try {
    device = at::Device(a.device);
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(absl::StrCat("bench rollout: unknown --device '", a.device, "'"));
  }
  TIDAL_ASSIGN_OR_RETURN(at::ScalarType dtype, ParseDtype(a.dtype, device));
  tidal::ModelConfig config;
  tidal::NamedTensors weights;
  if (!a.model_dir.empty()) {
    TIDAL_ASSIGN_OR_RETURN(tidal::Model loaded, tidal::Model::LoadHf(a.model_dir, dtype));
    config = loaded.config();
    weights = loaded.weights();
  } else {
    config = tidal::TinyQwen2Config(a.hidden, a.layers, a.heads, a.kv_heads, a.vocab);
    tidal::Model random = tidal::Model::RandomInit(config, a.seed, dtype);
    weights = random.weights();
  }
  const int64_t max_model_len = min_len > 0 ? 2 * max_len : a.prompt_len + a.max_new_tokens;
  config.max_position_embeddings = std::max(config.max_position_embeddings, max_model_len);
  tidal::NamedTensors on_device;
  for (const auto& [name, t] : weights) on_device.emplace(name, t.to(device));
  weights.clear();  // the engine copies from on_device; keep one host copy less
  tidal::Model model(config, on_device);

  EngineConfig ec;
  ec.block_size = a.block_size;
  ec.kv_cache_bytes = a.kv_cache_mb << 20;
  ec.gpu_memory_utilization = a.gpu_memory_utilization;
  ec.max_batch_tokens = a.max_batch_tokens;
  ec.max_seqs = a.max_seqs;
  ec.device = a.device;
  ec.dtype = dtype;
  ec.cuda_graphs = a.cuda_graphs;
  ec.cuda_fused_layers = a.fused_layers;
  ec.max_model_len = max_model_len;
  TIDAL_ASSIGN_OR_RETURN(auto engine, Engine::Create(config, on_device, ec));

  std::vector<Request> reqs = Workload(a, config.vocab_size, min_len, max_len);
  {  // warm-up: allocator, kernels' first-call setup
    std::vector<Request> warm(reqs.begin(), reqs.begin() + std::min<int64_t>(2, a.requests));
    for (auto& r : warm) r.params.max_new_tokens = 2;
    TIDAL_RETURN_IF_ERROR(engine->Generate(warm).status());
    NaiveGenerate(model, warm[0], device);
  }
  const auto stats0 = engine->stats();
  if (a.profile) tidal::cli::StartKernelProfile();
  Timer t_engine;
  TIDAL_ASSIGN_OR_RETURN(std::vector<RequestOutput> outs, engine->Generate(reqs));
  const double engine_wall = t_engine.WallS(), engine_cpu = t_engine.CpuS();
  nlohmann::json kernel_profile;
  if (a.profile) kernel_profile = tidal::cli::StopKernelProfile(a.profile_trace);
  const auto stats1 = engine->stats();

  int64_t in_tokens = 0, out_tokens = 0;
  for (const auto& o : outs) {
    in_tokens += std::ssize(o.prompt);
    out_tokens += std::ssize(o.tokens);
  }
  const int64_t naive_n = std::min(a.naive_requests, a.requests);
  int64_t naive_in = 0, naive_out = 0, matches = 0;
  Timer t_naive;
  std::vector<std::vector<int32_t>> naive_tokens;
  for (int64_t i = 0; i < naive_n; ++i) naive_tokens.push_back(NaiveGenerate(model, reqs[i], device));
  const double naive_wall = t_naive.WallS(), naive_cpu = t_naive.CpuS();
  for (int64_t i = 0; i < naive_n; ++i) {
    naive_in += std::ssize(reqs[i].prompt);
    naive_out += std::ssize(naive_tokens[i]);
    matches += naive_tokens[i] == outs[i].tokens ? 1 : 0;
  }
  // Bytes a step must move at least: every weight once, every attended K/V once.
  int64_t weight_bytes = 0;
  for (const auto& [name, t] : engine->weights()) weight_bytes += t.numel() * t.element_size();
  const int64_t kv_bytes_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads *
                                     config.HeadDim() * static_cast<int64_t>(c10::elementSize(dtype));
  const double bw = a.bandwidth_gbs * 1e9;
  const int64_t steps = stats1.steps - stats0.steps;
  const int64_t dsteps = stats1.decode_steps - stats0.decode_steps;
  const double roof_s = (double(steps) * weight_bytes +
                         double(stats1.context_tokens - stats0.context_tokens) * kv_bytes_per_token) / bw;
  const double roof_decode_s = (double(dsteps) * weight_bytes +
                                double(stats1.decode_context_tokens - stats0.decode_context_tokens) *
                                    kv_bytes_per_token) / bw;
  const double decode_s = stats1.decode_seconds - stats0.decode_seconds;
  const double step_s = stats1.step_seconds - stats0.step_seconds;
  const double forward_s = stats1.forward_seconds - stats0.forward_seconds;
  const int64_t queried = stats1.prefix_queried_tokens - stats0.prefix_queried_tokens;
  const int64_t hits = stats1.prefix_hit_tokens - stats0.prefix_hit_tokens;
  Json j;
  j["device"] = a.device;
  j["dtype"] = DtypeName(dtype);
  j["cuda_kernels"] = engine->uses_cuda_kernels();
  j["cuda_graphs"] = a.cuda_graphs && engine->uses_cuda_kernels();
  j["fused_layers"] = a.fused_layers && engine->uses_cuda_kernels();
  j["threads"] = a.threads;
  j["model"] = {{"source", a.model_dir.empty() ? "random tiny qwen2" : a.model_dir},
                {"hidden", config.hidden_size}, {"layers", config.num_hidden_layers},
                {"heads", config.num_attention_heads}, {"kv_heads", config.num_key_value_heads},
                {"vocab", config.vocab_size}};
  j["workload"] = {{"requests", a.requests}, {"group_size", a.group_size},
                   {"prompt_len", a.prompt_len}, {"max_new_tokens", a.max_new_tokens},
                   {"random_lengths", a.random_lengths}, {"temperature", a.temperature},
                   {"seed", a.seed}};
  j["engine"] = {{"requests", a.requests},
                 {"input_tokens", in_tokens},
                 {"output_tokens", out_tokens},
                 {"wall_s", engine_wall},
                 {"cpu_s", engine_cpu},
                 {"output_tok_per_s_wall", out_tokens / engine_wall},
                 {"output_tok_per_cpu_s", out_tokens / engine_cpu},
                 {"prefix_cache_hit_rate", queried ? double(hits) / queried : 0.0},
                 {"steps", stats1.steps - stats0.steps},
                 {"preemptions", stats1.preemptions - stats0.preemptions},
                 {"block_size", a.block_size},
                 {"num_blocks", engine->config().num_blocks},
                 {"max_batch_tokens", a.max_batch_tokens},
                 {"max_seqs", a.max_seqs},
                 {"decode_steps", dsteps},
                 {"decode_step_ms", dsteps ? 1000 * decode_s / dsteps : 0.0},
                 {"mean_decode_batch", dsteps ? double(stats1.decode_tokens - stats0.decode_tokens) / dsteps : 0.0},
                 {"time_s", {{"forward_and_sampling", forward_s},
                             {"step_cpu_rest", step_s - forward_s},
                             {"outside_step", engine_wall - step_s},
                             {"decode_steps", decode_s},
                             {"prefill_or_mixed_steps", step_s - decode_s}}}};
  j["roofline"] = {{"bandwidth_gbs", a.bandwidth_gbs},
                   {"weight_bytes", weight_bytes},
                   {"kv_bytes_per_token", kv_bytes_per_token},
                   {"roofline_s", roof_s},
                   {"fraction", roof_s / engine_wall},
                   {"roofline_output_tok_per_s", out_tokens / roof_s},
                   {"decode_roofline_s", roof_decode_s},
                   {"decode_fraction", decode_s > 0 ? roof_decode_s / decode_s : 0.0}};
  if (a.profile) j["kernel_profile"] = kernel_profile;
  j["naive"] = {{"method", "one request at a time, full recompute per token (Model::Logits), no KV cache"},
                {"requests", naive_n},
                {"input_tokens", naive_in},
                {"output_tokens", naive_out},
                {"wall_s", naive_wall},
                {"cpu_s", naive_cpu},
                {"output_tok_per_s_wall", naive_out / naive_wall},
                {"output_tok_per_cpu_s", naive_out / naive_cpu},
                {"prefix_cache_hit_rate", 0.0},
                {"outputs_match_engine", matches}};
  if (naive_n > 0) {
    j["speedup_output_tok_per_cpu_s"] = (out_tokens / engine_cpu) / (naive_out / naive_cpu);
    j["speedup_output_tok_per_s_wall"] = (out_tokens / engine_wall) / (naive_out / naive_wall);
  } else {
    j["naive"] = nullptr;  // --naive-requests 0
  }
  if (!a.hf_python.empty()) {
    TIDAL_ASSIGN_OR_RETURN(Json hf, RunHfBaseline(a, reqs, dtype));
    j["hf"] = hf;
    if (hf.contains("output_tok_per_s_wall") && hf["output_tok_per_s_wall"].get<double>() > 0) {
      j["speedup_vs_hf_wall"] = (out_tokens / engine_wall) / hf["output_tok_per_s_wall"].get<double>();
    }
  }
  std::cout << j.dump(2) << std::endl;
  // Exact agreement is expected in fp32 on the CPU; in bf16 on a GPU, kernels that sum in a
  // different order flip near-tied argmaxes of a random model (reported, not an error).
  if (matches != naive_n && !device.is_cuda() && dtype == at::kFloat) {
    return absl::InternalError(absl::StrCat("bench rollout: only ", matches, " of ", naive_n,
                                            " naive outputs equal the engine's"));
  }
  return absl::OkStatus();
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto a = std::make_shared<Args>();
  sub.add_option("--requests", a->requests, "Requests (prompts x group size)");
  sub.add_option("--prompt-len", a->prompt_len, "Prompt tokens per request");
  sub.add_option("--max-new-tokens", a->max_new_tokens, "Generated tokens per request");
  sub.add_option("--group-size", a->group_size, "Requests sharing one prompt (GRPO group)");
  sub.add_option("--temperature", a->temperature, "Sampling temperature (0 = greedy)");
  sub.add_option("--hidden", a->hidden, "Random model: hidden size");
  sub.add_option("--layers", a->layers, "Random model: layers");
  sub.add_option("--heads", a->heads, "Random model: attention heads");
  sub.add_option("--kv-heads", a->kv_heads, "Random model: kv heads");
  sub.add_option("--vocab", a->vocab, "Random model: vocabulary size");
  sub.add_option("--model-dir", a->model_dir, "HF checkpoint directory instead of a random model");
  sub.add_option("--device", a->device, "cpu, cuda, cuda:N");
  sub.add_option("--dtype", a->dtype, "auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16");
  sub.add_option("--random-lengths", a->random_lengths, "MIN:MAX: prompt and output lengths uniform in [MIN, MAX]");
  sub.add_option("--hf-python", a->hf_python, "Python with transformers: also run the HF generate baseline");
  sub.add_option("--hf-script", a->hf_script, "The HF baseline script");
  sub.add_option("--bandwidth-gbs", a->bandwidth_gbs, "Device memory bandwidth for the roofline (GB/s)");
  sub.add_option("--gpu-memory-utilization", a->gpu_memory_utilization, "CUDA: KV cache = this fraction of free memory");
  sub.add_option("--cuda-graphs", a->cuda_graphs, "CUDA: replay decode steps from graphs");
  sub.add_option("--fused-layers", a->fused_layers, "CUDA: fused decoder-layer kernels");
  sub.add_option("--threads", a->threads, "Intra-op CPU threads");
  sub.add_option("--block-size", a->block_size, "KV block size (tokens)");
  sub.add_option("--max-batch-tokens", a->max_batch_tokens, "Tokens per engine step");
  sub.add_option("--max-seqs", a->max_seqs, "Sequences per engine step");
  sub.add_option("--kv-cache-mb", a->kv_cache_mb, "KV cache size (MiB)");
  sub.add_option("--naive-requests", a->naive_requests, "Requests the naive loop runs (0: none)");
  sub.add_option("--seed", a->seed, "Seed for weights, prompts and sampling");
  sub.add_flag("--profile", a->profile,
               "Device time per kernel of the engine run (Kineto/CUPTI) under \"kernel_profile\"; "
               "the profiler slows the run, so its throughput is not a figure to quote");
  sub.add_option("--profile-trace", a->profile_trace, "With --profile: also write a Chrome trace here");
  return [a] { return Run(*a); };
}

TIDAL_CLI_COMMAND("bench rollout", "Rollout engine throughput vs a naive decoding loop (JSON)", Setup);

}  // namespace
