// `tidal bench weight-sync`: time to move one policy version from trainer to engine on GPUs, by
// path, against a raw transfer of the same bytes measured in the same run. Prints JSON.
//
// Model: a random Qwen2.5-1.5B- or 7B-shaped parameter set (--shape). The trainer side holds
// fp32 masters as flat per-layer-group buffers (as trainer/sharded_model.h keeps its shards on
// one train rank) and the engine side one bf16 tensor per parameter (rollout::Engine's storage).
//   inproc  one process, one GPU: a non-finite check of the masters (so a bad version is
//           refused before the engine is touched), PackDirect (fp32 -> bf16 cast + checksum,
//           written into the engine's tensors in one pass), a verify pass over them.
//           Baseline: a raw device copy of the bf16 bytes (cudaMemcpy D2D via copy_).
//   ipc     two processes, one GPU: the trainer packs into its exported staging buffer, the
//           engine process (this binary, --role ipc-engine) maps it, verifies every bucket
//           and applies; the notice and the release travel over pipes (the control plane's
//           stand-in). Baseline: a raw device copy of the mapped bytes in the engine process.
//   nccl    two processes, two GPUs (--device, --peer-device): the pipelined broadcast
//           (weight_sync/broadcast_transfer.h) in its own NCCL group. Baseline: one raw
//           ncclBroadcast of the same bytes, and the same buckets broadcast raw back to back.
// Stages are also timed alone (gather, pack, transfer, verify, apply). nccl also runs an overlap
// pass: the engine process keeps stepping (a decode-shaped stand-in) while each version streams
// in, polls at step boundaries and applies once verified; `pause` is that apply. For inproc the
// pause is the whole update (the phases alternate on one GPU), for ipc the apply. With one train
// rank the masters are whole, so `gather` is 0.
// Times: host wall clock around synchronised work, median (and min) over --iters after
// --warmup. GB/s = engine bytes (bf16) / time.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "core/clock.h"
#include "core/communicator.h"
#include "core/communicator_nccl.h"
#include "tools/cli/bench_shapes.h"
#include "tools/cli/command.h"
#include "weight_sync/broadcast_group.h"
#include "weight_sync/broadcast_transfer.h"
#include "weight_sync/bucket_ops.h"
#include "weight_sync/cuda_ipc.h"

#ifdef TIDAL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

extern char** environ;

namespace {

using Json = nlohmann::json;
using namespace tidal;
using namespace tidal::weight_sync;

struct Args {
  std::string shape = "7b";
  std::string paths = "inproc,ipc,nccl";
  int64_t bucket_mb = 1024;  // weight_sync.bucket_mb's default
  int iters = 5;
  int warmup = 2;
  int device = 0;
  int peer_device = 1;
  std::string role;  // internal: ipc-engine | nccl-receiver
  std::string id_file;
  std::string out;
};

#ifdef TIDAL_WITH_CUDA
void Sync() { c10::cuda::device_synchronize(); }

// Median and min of a list of milliseconds.
Json Summary(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return Json{{"median", v.empty() ? 0.0 : v[v.size() / 2]}, {"min", v.empty() ? 0.0 : v.front()}, {"runs", v.size()}};
}
double Median(std::vector<double> v) { return Summary(std::move(v))["median"]; }

template <typename Fn>
std::vector<double> TimeIt(const Args& a, Fn&& fn) {
  std::vector<double> out;
  for (int i = 0; i < a.warmup + a.iters; ++i) {
    Sync();
    double t0 = tidal::MonoMillis();
    fn(i);
    Sync();
    if (i >= a.warmup) out.push_back(tidal::MonoMillis() - t0);
  }
  return out;
}

void Check(const absl::Status& s) {
  if (!s.ok()) throw std::runtime_error(std::string(s.message()));
}

struct Model {
  BucketLayout layout;
  std::vector<at::Tensor> masters;  // flat fp32 per layer group
  std::vector<at::Tensor> sources;  // views into masters, per parameter
  int64_t engine_bytes = 0;
};

// Parameter p's layer group: embed, layer l, or head (as trainer/sharded_model.h groups them).
std::string GroupOf(const std::string& name) {
  const std::string layers = "model.layers.";
  if (name.rfind(layers, 0) == 0) return name.substr(0, name.find('.', layers.size()));
  if (name.rfind("model.embed_tokens", 0) == 0) return "embed";
  return "head";
}

absl::StatusOr<BucketLayout> Layout(const Args& a) {
  TIDAL_ASSIGN_OR_RETURN(ModelConfig config, cli::BenchModelShape(a.shape));
  return PlanBuckets(ParamSpecs(config), a.bucket_mb << 20);
}

Model MakeTrainerSide(const Args& a, const at::Device& dev) {
  Model m;
  m.layout = Layout(a).value();
  std::vector<std::pair<std::string, int64_t>> groups;
  for (size_t p = 0; p < m.layout.params.size(); ++p) {
    std::string g = GroupOf(m.layout.params[p].name);
    if (groups.empty() || groups.back().first != g) groups.emplace_back(g, 0);
    groups.back().second += m.layout.param_numel[p];
  }
  size_t p = 0;
  at::manual_seed(0);
  for (const auto& [g, n] : groups) {
    at::Tensor flat = at::randn({n}, at::TensorOptions().dtype(at::kFloat).device(dev)) * 0.02;
    int64_t off = 0;
    while (p < m.layout.params.size() && GroupOf(m.layout.params[p].name) == g) {
      m.sources.push_back(flat.narrow(0, off, m.layout.param_numel[p]).view(m.layout.params[p].shape));
      off += m.layout.param_numel[p];
      ++p;
    }
    m.masters.push_back(flat);
  }
  m.engine_bytes = m.layout.total_elements * 2;
  return m;
}

std::vector<at::Tensor> EngineTensors(const BucketLayout& layout, const at::Device& dev) {
  std::vector<at::Tensor> out;
  for (const auto& p : layout.params) {
    out.push_back(at::zeros(p.shape, at::TensorOptions().dtype(at::kBFloat16).device(dev)));
  }
  return out;
}

Json Header(const Args& a, const Model& m, const std::string& path) {
  return Json{{"path", path},
              {"shape", a.shape},
              {"parameters", m.layout.total_elements},
              {"engine_bytes", m.engine_bytes},
              {"fp32_master_bytes", m.layout.total_elements * 4},
              {"buckets", m.layout.count()},
              {"bucket_mb", a.bucket_mb},
              {"iters", a.iters},
              {"warmup", a.warmup}};
}

double Gbps(int64_t bytes, double ms) { return ms > 0 ? bytes / (ms * 1e6) : 0.0; }

Json RunInProcess(const Args& a) {
  const at::Device dev(at::kCUDA, a.device);
  Model m = MakeTrainerSide(a, dev);
  auto engine = EngineTensors(m.layout, dev);
  auto opts = at::TensorOptions().dtype(at::kLong).device(dev);
  at::Tensor sent = at::zeros({m.layout.count()}, opts), seen = at::zeros({m.layout.count()}, opts);
  at::Tensor bad = at::zeros({1}, opts.dtype(at::kInt));
  int64_t version = 0;
  std::vector<double> check, pack, verify;
  auto total = TimeIt(a, [&](int i) {
    // All or nothing: refuse a non-finite version before the engine's tensors are touched.
    double tc = tidal::MonoMillis();
    bad.zero_();
    CountNonFinite(m.layout, m.sources, bad);
    if (NonFinite(bad) != 0) throw std::runtime_error("non-finite values in random masters");
    double t0 = tidal::MonoMillis();
    PackDirect(m.layout, m.sources, engine, sent);
    Sync();
    double t1 = tidal::MonoMillis();
    ChecksumTargets(m.layout, engine, seen);
    Check(CompareChecksums(sent, seen, ++version));  // waits
    double t2 = tidal::MonoMillis();
    if (i >= a.warmup) {
      check.push_back(t0 - tc);
      pack.push_back(t1 - t0);
      verify.push_back(t2 - t1);
    }
  });
  at::Tensor src = at::empty({m.engine_bytes}, at::TensorOptions().dtype(at::kByte).device(dev));
  at::Tensor dst = at::empty_like(src);
  auto raw = TimeIt(a, [&](int) { dst.copy_(src); });
  // The cast alone, as torch does it (no checksum), for the fused pass's floor.
  auto cast = TimeIt(a, [&](int) {
    for (size_t p = 0; p < engine.size(); ++p) engine[p].copy_(m.sources[p]);
  });
  Json j = Header(a, m, "inproc");
  const double t = Median(total);
  j["update_ms"] = Summary(total);
  j["update_gbps"] = Gbps(m.engine_bytes, t);
  j["stages_ms"] = {{"gather", 0.0}, {"finite_check", Median(check)}, {"pack_and_apply", Median(pack)},
                    {"transfer", 0.0}, {"verify", Median(verify)}, {"pause", t}};
  j["baseline"] = {{"what", "raw device copy of the same bf16 bytes (copy_)"}, {"ms", Summary(raw)},
                   {"gbps", Gbps(m.engine_bytes, Median(raw))}};
  j["torch_cast_ms"] = Summary(cast);
  j["note"] = "in-process: the engine stops for the whole update (trainer and engine share the GPU and alternate)";
  return j;
}

// A child process running this binary with `args`, stdin/stdout as pipes.
struct Child {
  pid_t pid = -1;
  FILE* to = nullptr;
  FILE* from = nullptr;
  static Child Spawn(const std::vector<std::string>& args) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<std::string> full = {"/proc/self/exe"};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : full) argv.push_back(s.data());
    argv.push_back(nullptr);
    Child c;
    int rc = posix_spawn(&c.pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) throw std::runtime_error("posix_spawn failed");
    c.to = fdopen(in[1], "w");
    c.from = fdopen(out[0], "r");
    return c;
  }
  void Send(const Json& j) {
    std::string s = j.dump() + "\n";
    fputs(s.c_str(), to);
    fflush(to);
  }
  // The next JSON line (a library may print other lines to stdout: they are skipped).
  Json Read() {
    while (true) {
      std::string line;
      int ch;
      while ((ch = fgetc(from)) != EOF && ch != '\n') line += static_cast<char>(ch);
      if (!line.empty() && line[0] == '{') return Json::parse(line);
      if (ch == EOF) throw std::runtime_error("child process ended early (see its stderr)");
    }
  }
  int Wait() {
    if (to) fclose(to);
    to = nullptr;
    int st = 0;
    waitpid(pid, &st, 0);
    if (from) fclose(from);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  }
};

std::vector<std::string> ChildArgs(const Args& a, const std::string& role, int device) {
  return {"bench", "weight-sync", "--role", role, "--shape", a.shape, "--bucket-mb", std::to_string(a.bucket_mb),
          "--iters", std::to_string(a.iters), "--warmup", std::to_string(a.warmup), "--device",
          std::to_string(device), "--id-file", a.id_file};
}

// Reads a line from stdin (the parent's pipe).
Json ReadParent() {
  std::string line;
  if (!std::getline(std::cin, line)) return Json{{"quit", true}};
  return Json::parse(line);
}
void TellParent(const Json& j) { std::cout << j.dump() << std::endl; }

int RunIpcEngine(const Args& a) {
  const at::Device dev(at::kCUDA, a.device);
  c10::cuda::CUDAGuard guard(a.device);
  auto layout = Layout(a).value();
  auto importer = IpcImporter::Create(layout, a.device).value();
  auto engine = EngineTensors(layout, dev);
  while (true) {
    Json msg = ReadParent();
    if (msg.contains("quit")) break;
    if (msg.contains("raw_copy")) {
      at::Tensor local = at::empty({layout.staging_bytes}, at::TensorOptions().dtype(at::kByte).device(dev));
      auto raw = TimeIt(a, [&](int) { local.copy_(importer->mapped()); });
      TellParent({{"raw_copy_ms", raw}});
      continue;
    }
    IpcNotice n = msg.get<IpcNotice>();
    double t0 = tidal::MonoMillis();
    absl::Status s = importer->Receive(n);  // waits for the trainer's event, checksums, verifies
    double t1 = tidal::MonoMillis();
    if (s.ok()) s = importer->Apply(engine);
    Sync();
    double t2 = tidal::MonoMillis();
    auto released = importer->Release();
    TellParent({{"ok", s.ok()}, {"error", std::string(s.message())}, {"verify_ms", t1 - t0}, {"apply_ms", t2 - t1},
                {"released", released.ok() ? *released : -1}});
  }
  return 0;
}

Json RunIpc(const Args& a) {
  const at::Device dev(at::kCUDA, a.device);
  Model m = MakeTrainerSide(a, dev);
  Child child = Child::Spawn(ChildArgs(a, "ipc-engine", a.device));
  // The weights plane's IPC transport (weight_sync/cuda_ipc.h), as a run would drive it.
  IpcTransport tx(
      IpcExporter::Create(m.layout, a.device).value(),
      [&] { return absl::StatusOr<std::vector<at::Tensor>>(m.sources); },
      [&](const IpcNotice& notice) {
        child.Send(notice);
        return absl::OkStatus();
      });
  std::vector<double> pack, verify, apply;
  int64_t version = 0;
  auto total = TimeIt(a, [&](int i) {
    auto published = tx.Publish(++version);  // packs, waits for the pack, sends the notice
    Check(published.status());
    Json r = child.Read();
    if (!r["ok"].get<bool>()) throw std::runtime_error("engine refused: " + r["error"].get<std::string>());
    tx.Released(r["released"].get<int64_t>());
    if (i >= a.warmup) {
      pack.push_back(published->send_seconds * 1e3);
      verify.push_back(r["verify_ms"]);
      apply.push_back(r["apply_ms"]);
    }
  });
  child.Send({{"raw_copy", true}});
  std::vector<double> raw = child.Read()["raw_copy_ms"];
  child.Send({{"quit", true}});
  if (int rc = child.Wait(); rc != 0) throw std::runtime_error("ipc engine process exited with " + std::to_string(rc));
  Json j = Header(a, m, "ipc");
  const double t = Median(total);
  j["update_ms"] = Summary(total);
  j["update_gbps"] = Gbps(m.engine_bytes, t);
  j["stages_ms"] = {{"gather", 0.0}, {"pack", Median(pack)}, {"transfer", 0.0}, {"verify", Median(verify)},
                    {"apply", Median(apply)}, {"pause", Median(apply)}};
  j["baseline"] = {{"what", "raw device copy of the mapped staging bytes in the engine process"},
                   {"ms", Summary(raw)}, {"gbps", Gbps(m.layout.staging_bytes, Median(raw))}};
  j["note"] = "transfer is 0: the engine reads the trainer's buffer in place (mapped, same GPU)";
  return j;
}

absl::StatusOr<std::unique_ptr<Communicator>> Connect(const Args& a, int rank) {
  GroupTicket t{1, rank, 2, ""};
  if (rank == 1) {
    std::string id(128, '\0');  // sizeof(ncclUniqueId)
    TIDAL_RETURN_IF_ERROR(NcclIdViaFile(a.id_file, 1, absl::Minutes(2))(id));
    t.nccl_id = id;
  }
  return ConnectBroadcastGroup(t, a.device, [&](int64_t, const std::string& id) {
    std::string copy = id;
    return NcclIdViaFile(a.id_file, 0, absl::Minutes(2))(copy);
  }, absl::Minutes(2));
}

// Both ranks run the same sequence of collectives; the receiver times what the engine sees.
Json NcclRank(const Args& a, int rank, Model* trainer) {
  const at::Device dev(at::kCUDA, a.device);
  c10::cuda::CUDAGuard guard(a.device);
  BucketLayout layout = trainer ? trainer->layout : Layout(a).value();
  auto comm = Connect(a, rank);
  Check(comm.status());
  Communicator& c = **comm;
  Json r;
  int64_t version = 0;
  std::vector<double> verify_alone, apply_alone, pack_alone;
  at::Tensor raw = rank == 0 ? at::empty({layout.staging_bytes}, at::TensorOptions().dtype(at::kByte).device(dev))
                             : at::Tensor();
  if (rank == 0) {
    // The weights plane's NCCL transport (weight_sync/broadcast_transfer.h).
    BroadcastTransport tx(layout, dev, &c, [&] { return absl::StatusOr<std::vector<at::Tensor>>(trainer->sources); });
    r["update_ms"] = TimeIt(a, [&](int) {
      Check(c.Barrier());
      Check(tx.Publish(++version).status());
    });
    // The receiver's overlap run: same number of versions, sent the same way.
    r["overlap_sender_ms"] = TimeIt(a, [&](int) {
      Check(c.Barrier());
      Check(tx.Publish(++version).status());
    });
    pack_alone = TimeIt(a, [&](int) { PackAll(layout, trainer->sources, raw, 0); });
  } else {
    BroadcastReceiver rx(layout, dev);
    auto engine = EngineTensors(layout, dev);
    std::vector<double> receive;
    r["update_ms"] = TimeIt(a, [&](int i) {
      Check(c.Barrier());
      double t0 = tidal::MonoMillis();
      Check(rx.Receive(c, ++version));
      if (i >= a.warmup) receive.push_back(tidal::MonoMillis() - t0);
      Check(rx.Apply(engine));
    });
    r["receive_ms"] = receive;
    // Overlap: the engine keeps stepping (a decode-shaped stand-in: 8 bf16 [64 x hidden] x
    // [hidden x 4 hidden] products, then a host sync, as a step boundary does) while the version
    // streams in; it polls at each boundary and applies when the version is verified.
    const int64_t h = layout.params[0].shape.back();
    auto bf = at::TensorOptions().dtype(at::kBFloat16).device(dev);
    at::Tensor w = at::randn({h, 4 * h}, bf), x = at::randn({64, h}, bf);
    // The step boundary waits for the engine's own stream only (a device-wide sync would also
    // wait for the broadcast in flight on the receiver's streams).
    auto step = [&] {
      for (int k = 0; k < 8; ++k) at::mm(x, w);
      c10::cuda::getCurrentCUDAStream(a.device).synchronize();
    };
    r["idle_step_ms"] = TimeIt(a, [&](int) { step(); });
    std::vector<double> pause, switch_ms, steps, step_ms;
    for (int i = 0; i < a.warmup + a.iters; ++i) {
      Check(c.Barrier());
      const double t0 = tidal::MonoMillis();
      Check(rx.Begin(c, ++version));
      int n = 0;
      std::optional<absl::Status> outcome;
      while (!(outcome = rx.Poll())) {
        step();
        ++n;
      }
      Check(*outcome);
      const double t1 = tidal::MonoMillis();
      Check(rx.Apply(engine));
      Sync();
      const double t2 = tidal::MonoMillis();
      if (i >= a.warmup) {
        pause.push_back(t2 - t1);
        switch_ms.push_back(t2 - t0);
        steps.push_back(n);
        step_ms.push_back(n > 0 ? (t1 - t0) / n : 0.0);
      }
    }
    r["overlap"] = {{"pause_ms", pause}, {"begin_to_applied_ms", switch_ms}, {"steps_while_streaming", steps},
                    {"step_ms_while_streaming", step_ms}};
    at::Tensor sums = at::zeros({layout.count()}, at::TensorOptions().dtype(at::kLong).device(dev));
    verify_alone = TimeIt(a, [&](int) {
      ChecksumBuckets(layout, rx.staging(), 0, layout.count(), sums);
      Check(VerifyBuckets(layout, rx.staging(), 0, layout.count(), sums, version));
    });
    apply_alone = TimeIt(a, [&](int) { Check(rx.Apply(engine)); });
    raw = rx.staging();
  }
  r["raw_broadcast_ms"] = TimeIt(a, [&](int) {
    Check(c.Barrier());
    Check(c.Broadcast(raw, 0));
  });
  r["raw_bucketed_ms"] = TimeIt(a, [&](int) {
    Check(c.Barrier());
    for (int32_t b = 0; b < layout.count(); ++b) Check(c.Broadcast(BucketView(layout, raw, b), 0));
  });
  r["pack_ms"] = pack_alone;
  r["verify_ms"] = verify_alone;
  r["apply_ms"] = apply_alone;
  return r;
}

int RunNcclReceiver(const Args& a) {
  TellParent(NcclRank(a, 1, nullptr));
  return 0;
}

Json RunNccl(const Args& a) {
  Args child_args = a;
  if (child_args.id_file.empty()) {
    child_args.id_file = "/tmp/tidal-bench-weight-sync-" + std::to_string(getpid()) + ".ncclid";
  }
  std::remove(child_args.id_file.c_str());
  const at::Device dev(at::kCUDA, a.device);
  Model m = MakeTrainerSide(a, dev);
  Child child = Child::Spawn(ChildArgs(child_args, "nccl-receiver", a.peer_device));
  Json r0 = NcclRank(child_args, 0, &m);
  Json r1 = child.Read();
  if (int rc = child.Wait(); rc != 0) throw std::runtime_error("nccl receiver exited with " + std::to_string(rc));
  std::remove(child_args.id_file.c_str());
  Json j = Header(a, m, "nccl");
  const double t = Median(r1["update_ms"]);
  const double raw = Median(r1["raw_broadcast_ms"]);
  j["devices"] = {a.device, a.peer_device};
  j["update_ms"] = Summary(r1["update_ms"]);  // receiver: barrier -> verified and applied
  j["sender_ms"] = Summary(r0["update_ms"]);
  j["update_gbps"] = Gbps(m.engine_bytes, t);
  j["stages_ms"] = {{"gather", 0.0},
                    {"pack", Median(r0["pack_ms"])},
                    {"transfer", Median(r1["raw_bucketed_ms"])},
                    {"verify", Median(r1["verify_ms"])},
                    {"apply", Median(r1["apply_ms"])},
                    {"receive_pipelined", Median(r1["receive_ms"])}};
  j["baseline"] = {{"what", "one raw ncclBroadcast of the same bytes (staging size)"}, {"ms", Summary(r1["raw_broadcast_ms"])},
                   {"gbps", Gbps(m.layout.staging_bytes, raw)}};
  j["raw_bucketed_broadcast_ms"] = Summary(r1["raw_bucketed_ms"]);
  j["overlap"] = {{"pause_ms", Summary(r1["overlap"]["pause_ms"])},
                  {"begin_to_applied_ms", Summary(r1["overlap"]["begin_to_applied_ms"])},
                  {"steps_while_streaming", Summary(r1["overlap"]["steps_while_streaming"])},
                  {"step_ms_while_streaming", Summary(r1["overlap"]["step_ms_while_streaming"])},
                  {"idle_step_ms", Summary(r1["idle_step_ms"])}};
  j["stages_ms"]["pause"] = Median(r1["overlap"]["pause_ms"]);
  j["transfer_fraction_of_raw"] = raw > 0 ? raw / Median(r1["receive_ms"]) : 0.0;
  j["note"] = "update = pipelined pack+broadcast+checksum, trailer/commit check, then apply (the pause); "
              "transfer_fraction_of_raw = raw broadcast time / pipelined receive time";
  return j;
}

#endif  // TIDAL_WITH_CUDA

absl::Status Run(const Args& a) {
#ifndef TIDAL_WITH_CUDA
  return absl::UnimplementedError("bench weight-sync needs a CUDA build");
#else
  if (!at::hasCUDA()) return absl::FailedPreconditionError("bench weight-sync needs a CUDA device");
  if (a.bucket_mb <= 0) return absl::InvalidArgumentError("--bucket-mb must be positive");
  TIDAL_RETURN_IF_ERROR(cli::BenchModelShape(a.shape).status());
  try {
    if (a.role == "ipc-engine") return RunIpcEngine(a) == 0 ? absl::OkStatus() : absl::InternalError("ipc engine");
    if (a.role == "nccl-receiver") return RunNcclReceiver(a) == 0 ? absl::OkStatus() : absl::InternalError("nccl");
    if (!a.role.empty()) return absl::InvalidArgumentError("--role: ipc-engine | nccl-receiver");
    Json results = Json::array();
    for (const std::string& p : std::vector<std::string>(absl::StrSplit(a.paths, ','))) {
      c10::cuda::CUDAGuard guard(a.device);
      if (p == "inproc") {
        results.push_back(RunInProcess(a));
      } else if (p == "ipc") {
        results.push_back(RunIpc(a));
      } else if (p == "nccl") {
        results.push_back(RunNccl(a));
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--paths: unknown path '", p, "' (inproc, ipc, nccl)"));
      }
      c10::cuda::CUDACachingAllocator::emptyCache();
      std::cerr << results.back().dump() << std::endl;
    }
    std::cout << results.dump(2) << std::endl;
    if (!a.out.empty()) {
      std::ofstream f(a.out);
      f << results.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("bench weight-sync: ", e.what()));
  }
  return absl::OkStatus();
#endif
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto a = std::make_shared<Args>();
  sub.add_option("--shape", a->shape, "Model shape: 1.5b | 7b | tiny (random Qwen2.5-shaped weights)");
  sub.add_option("--paths", a->paths, "Comma-separated: inproc, ipc, nccl");
  sub.add_option("--bucket-mb", a->bucket_mb, "Bucket size in MiB");
  sub.add_option("--iters", a->iters, "Timed repetitions");
  sub.add_option("--warmup", a->warmup, "Untimed repetitions first");
  sub.add_option("--device", a->device, "CUDA device of the trainer (and of the engine for inproc/ipc)");
  sub.add_option("--peer-device", a->peer_device, "CUDA device of the engine for the nccl path");
  sub.add_option("--out", a->out, "Also write the JSON here");
  sub.add_option("--role", a->role, "internal: the child process's role")->group("");
  sub.add_option("--id-file", a->id_file, "internal: NCCL id rendezvous file")->group("");
  return [a] { return Run(*a); };
}

TIDAL_CLI_COMMAND("bench weight-sync", "Weight sync on GPUs (in-process, CUDA IPC, NCCL) vs raw copies (JSON)", Setup);

}  // namespace
