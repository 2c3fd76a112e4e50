// `tidal bench train`: tokens/s and MFU of the sharded trainer (trainer/sharded_model.h) on a
// random Qwen2.5-shaped model over NCCL, one process per GPU. Prints rank 0's JSON.
//
// Workload per rank and step: --seqs sequences of --seq-len random tokens packed into one
// micro-batch, next-token loss on every position (mean), bf16 compute with fp32 gradient reduce,
// global grad-norm clipping at 1.0, AdamW. MFU = 6 * parameters * tokens/s / (989.4 TFLOP/s
// dense bf16 per H100/H200 * GPUs), attention FLOPs not counted (as the FSDP2 baseline,
// tools/bench/fsdp2_train.py, counts them). The baseline (--fsdp2-python PY) runs in the same
// invocation, after the tidal ranks have exited and freed the GPUs: `PY -m torch.distributed.run`
// starts tools/bench/fsdp2_train.py on the same shape, batch, precision and steps; its JSON lands
// under "baseline" and the ratio under "speedup_vs_baseline".
#include <ATen/ATen.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/communicator_nccl.h"
#include "tools/cli/baseline_command.h"
#include "tools/cli/bench_shapes.h"
#include "tools/cli/command.h"
#include "tools/cli/kernel_profile.h"
#include "trainer/sharded_model.h"

#ifdef TIDAL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#endif

extern char** environ;

namespace {

using Json = nlohmann::json;
using tidal::cli::CommandOutput;
using tidal::cli::LastJsonLine;
using tidal::cli::RunCommand;
using namespace tidal;
using namespace tidal::trainer;

constexpr double kPeakBf16Flops = 989.4e12;  // H100/H200 SXM dense bf16

struct Args {
  std::string shape = "1.5b";
  int world = 2;
  int64_t seqs = 8;
  int64_t seq_len = 2048;
  int iters = 5;
  int warmup = 2;
  bool checkpointing = false;  // as the recipes' train.activation_checkpointing default
  bool profile = false;        // one more step on rank 0 under the kernel profiler, after the timed ones
  std::string profile_trace;
  int rank = -1;  // internal: set in the per-GPU child processes
  std::string id_file;
  std::string out;
  std::string fsdp2_python;  // empty: no baseline
  std::string fsdp2_script = "tools/bench/fsdp2_train.py";
};

#ifdef TIDAL_WITH_CUDA

absl::StatusOr<Json> RunRank(const Args& a) {
  const int r = a.rank;
  const at::Device dev(at::kCUDA, r);
  c10::cuda::CUDAGuard guard(r);
  TIDAL_ASSIGN_OR_RETURN(ModelConfig config, cli::BenchModelShape(a.shape));
  NcclCommunicatorOptions o;
  o.rank = r;
  o.world_size = a.world;
  o.device = r;
  o.timeout = absl::Minutes(5);
  o.name = "bench-train";
  TIDAL_ASSIGN_OR_RETURN(auto comm, CreateNcclCommunicator(o, NcclIdViaFile(a.id_file, r, absl::Minutes(2))));
  int64_t params = 0;
  std::unique_ptr<ShardedModel> model;
  {
    // Same seed on every rank: identical random weights without a broadcast.
    at::manual_seed(1);
    NamedTensors full;
    for (const ParamSpec& s : ParamSpecs(config)) {
      at::Tensor t = at::empty(s.shape, at::TensorOptions().dtype(at::kFloat).device(dev));
      if (s.name.find("norm") != std::string::npos) t.fill_(1.0);
      else if (s.name.size() > 5 && s.name.substr(s.name.size() - 5) == ".bias") t.zero_();
      else t.normal_(0.0, 0.02);
      params += t.numel();
      full.emplace(s.name, t);
    }
    ShardingOptions so;
    so.compute_dtype = at::kBFloat16;
    so.reduce_dtype = at::kFloat;
    so.device = dev;
    so.activation_checkpointing = a.checkpointing;
    TIDAL_ASSIGN_OR_RETURN(model, ShardedModel::Create(config, full, comm.get(), so));
  }
  c10::cuda::CUDACachingAllocator::emptyCache();
  // One packed micro-batch: seqs x seq_len random tokens, loss on every next token.
  const int64_t T = a.seqs * a.seq_len;
  at::manual_seed(100 + r);
  PackedBatch batch;
  auto lopt = at::TensorOptions().dtype(at::kLong).device(dev);
  batch.ids = at::randint(0, config.vocab_size, {T}, lopt);
  batch.cu_seqlens = at::arange(0, T + 1, a.seq_len, lopt);
  at::Tensor pos = at::arange(T, lopt);
  batch.loss_rows = pos.masked_select((pos + 1) % a.seq_len != 0);
  batch.targets = batch.ids.index({batch.loss_rows + 1});
  const double n_loss = static_cast<double>(batch.loss_rows.numel());
  Objective objective = [n_loss](const at::Tensor& logprobs, const at::Tensor&) { return -logprobs.sum() / n_loss; };
  AdamWOptions adam;
  adam.lr = 1e-5;
  adam.weight_decay = 0.1;
  // One optimizer step, finished on the device; returns the gradient norm before clipping.
  auto step = [&] {
    model->ZeroGrad();
    model->ForwardBackward(batch, objective, false);
    const double norm = model->GradNorm();
    if (norm > 1.0) model->ScaleGrad(1.0 / norm);
    model->AdamWStep(adam);
    c10::cuda::device_synchronize();
    return norm;
  };
  c10::cuda::CUDACachingAllocator::resetPeakStats(r);
  std::vector<double> step_ms;
  double grad_norm = 0;
  for (int i = 0; i < a.warmup + a.iters; ++i) {
    c10::cuda::device_synchronize();
    TIDAL_RETURN_IF_ERROR(comm->Barrier());
    double t0 = tidal::MonoMillis();
    grad_norm = step();
    if (i >= a.warmup) step_ms.push_back(tidal::MonoMillis() - t0);
  }
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(r);
  Json profile;
  if (a.profile) {
    // Every rank runs the step (the collectives must match); rank 0 records its kernels.
    c10::cuda::device_synchronize();
    TIDAL_RETURN_IF_ERROR(comm->Barrier());
    if (r == 0) tidal::cli::StartKernelProfile();
    step();
    if (r == 0) profile = tidal::cli::StopKernelProfile(a.profile_trace, 40);
  }
  const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  std::sort(step_ms.begin(), step_ms.end());
  const double med = step_ms[step_ms.size() / 2];
  const double tokens_per_s = a.world * T / (med / 1e3);
  return Json{{"system", "tidal ShardedModel (NCCL)"},
              {"shape", a.shape},
              {"parameters", params},
              {"world", a.world},
              {"tokens_per_rank_per_step", T},
              {"activation_checkpointing", a.checkpointing},
              {"step_ms", {{"median", med}, {"min", step_ms.front()}, {"all", step_ms}}},
              {"tokens_per_s", tokens_per_s},
              {"mfu", 6.0 * params * tokens_per_s / (kPeakBf16Flops * a.world)},
              {"peak_allocated_gb", stats.allocated_bytes[agg].peak / 1e9},
              {"peak_reserved_gb", stats.reserved_bytes[agg].peak / 1e9},
              {"last_grad_norm", grad_norm},
              {"kernel_profile", profile}};
}

// Runs the FSDP2 baseline on the same shape, batch and steps; returns rank 0's JSON.
absl::StatusOr<Json> RunFsdp2Baseline(const Args& a) {
  const std::string cmd =
      absl::StrCat(a.fsdp2_python, " -m torch.distributed.run --standalone --nproc_per_node ", a.world, " ",
                   a.fsdp2_script, " --shape ", a.shape, " --seqs ", a.seqs, " --seq-len ", a.seq_len, " --iters ",
                   a.iters, " --warmup ", a.warmup, " --checkpointing ", a.checkpointing ? "true" : "false");
  TIDAL_ASSIGN_OR_RETURN(CommandOutput run, RunCommand(cmd));
  if (run.exit_code != 0) {
    return absl::InternalError(absl::StrCat("bench train: `", cmd, "` failed (", run.exit_code, "): ", run.out));
  }
  // Rank 0 prints one JSON line (torchrun and the libraries may log above it).
  std::optional<Json> j = LastJsonLine(run.out);
  if (!j) return absl::InternalError(absl::StrCat("bench train: the FSDP2 baseline printed no JSON: ", run.out));
  return *j;
}

absl::Status Launch(const Args& a) {
  const std::string id_file = "/tmp/tidal-bench-train-" + std::to_string(getpid()) + ".ncclid";
  std::remove(id_file.c_str());
  std::vector<pid_t> pids;
  std::vector<FILE*> outs;
  for (int r = 0; r < a.world; ++r) {
    int fds[2];
    if (pipe(fds) != 0) return absl::InternalError("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::vector<std::string> args = {"/proc/self/exe", "bench", "train", "--shape", a.shape, "--world",
                                     std::to_string(a.world), "--seqs", std::to_string(a.seqs), "--seq-len",
                                     std::to_string(a.seq_len), "--iters", std::to_string(a.iters), "--warmup",
                                     std::to_string(a.warmup), "--checkpointing", a.checkpointing ? "true" : "false",
                                     "--rank", std::to_string(r), "--id-file", id_file};
    if (a.profile) args.push_back("--profile");
    if (!a.profile_trace.empty()) args.insert(args.end(), {"--profile-trace", a.profile_trace});
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) return absl::InternalError("posix_spawn failed");
    pids.push_back(pid);
    outs.push_back(fdopen(fds[0], "r"));
  }
  std::vector<std::string> texts(a.world);
  for (int r = 0; r < a.world; ++r) {
    int ch;
    while ((ch = fgetc(outs[r])) != EOF) texts[r] += static_cast<char>(ch);
    fclose(outs[r]);
  }
  bool ok = true;
  for (pid_t p : pids) {
    int st = 0;
    waitpid(p, &st, 0);
    ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  std::remove(id_file.c_str());
  if (!ok) return absl::InternalError("bench train: a rank failed (see stderr)");
  std::string text = texts[0];
  if (!a.fsdp2_python.empty()) {
    Json j;
    try {
      j = Json::parse(text);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("bench train: rank 0 printed no JSON: ", text));
    }
    TIDAL_ASSIGN_OR_RETURN(Json base, RunFsdp2Baseline(a));
    j["baseline"] = base;
    const double theirs = base.value("tokens_per_s", 0.0);
    if (theirs > 0) j["speedup_vs_baseline"] = j.value("tokens_per_s", 0.0) / theirs;
    text = j.dump(2) + "\n";
  }
  std::cout << text;
  if (!a.out.empty()) std::ofstream(a.out) << text;
  return absl::OkStatus();
}

#endif  // TIDAL_WITH_CUDA

absl::Status Run(const Args& a) {
#ifndef TIDAL_WITH_CUDA
  return absl::UnimplementedError("bench train needs a CUDA build");
#else
  if (!NcclAvailable()) return absl::UnimplementedError("bench train needs the NCCL backend");
  TIDAL_RETURN_IF_ERROR(cli::BenchModelShape(a.shape).status());
  if (a.world < 1 || a.seqs < 1 || a.seq_len < 2 || a.iters < 1) {
    return absl::InvalidArgumentError("--world, --seqs, --iters must be >= 1 and --seq-len >= 2");
  }
  if (a.rank < 0) return Launch(a);
  try {
    TIDAL_ASSIGN_OR_RETURN(Json j, RunRank(a));
    std::cout << j.dump(2) << std::endl;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("bench train rank ", a.rank, ": ", e.what()));
  }
  return absl::OkStatus();
#endif
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto a = std::make_shared<Args>();
  sub.add_option("--shape", a->shape, "Model shape: 1.5b | 7b | tiny (random weights)");
  sub.add_option("--world", a->world, "GPUs (one process each)");
  sub.add_option("--seqs", a->seqs, "Sequences per rank per step");
  sub.add_option("--seq-len", a->seq_len, "Tokens per sequence");
  sub.add_option("--iters", a->iters, "Timed steps");
  sub.add_option("--warmup", a->warmup, "Untimed steps first");
  sub.add_option("--checkpointing", a->checkpointing, "Activation checkpointing (recompute each layer in backward)");
  sub.add_option("--out", a->out, "Also write the JSON here");
  sub.add_option("--fsdp2-python", a->fsdp2_python,
                 "Python with torch and transformers: also run the PyTorch FSDP2 baseline (same shape, batch, "
                 "steps) after tidal's ranks, under \"baseline\"");
  sub.add_option("--fsdp2-script", a->fsdp2_script, "The FSDP2 baseline script");
  sub.add_flag("--profile", a->profile,
               "After the timed steps, one more step with rank 0's device time per kernel (Kineto/CUPTI) "
               "under \"kernel_profile\" (not part of the timed figures)");
  sub.add_option("--profile-trace", a->profile_trace, "With --profile: also write rank 0's Chrome trace here");
  sub.add_option("--rank", a->rank, "internal: this process's rank")->group("");
  sub.add_option("--id-file", a->id_file, "internal: NCCL id rendezvous file")->group("");
  return [a] { return Run(*a); };
}

TIDAL_CLI_COMMAND("bench train", "Sharded trainer tokens/s and MFU over NCCL (JSON)", Setup);

}  // namespace
