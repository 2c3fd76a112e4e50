// NCCL backend: runs one rank per visible GPU (up to 2) as threads; skipped without GPUs or
// without the NCCL build. The id travels over an shm group (NcclIdViaCommunicator).
#include "core/communicator_nccl.h"

#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "core/communicator_shm.h"

namespace tidal {
namespace {

int Gpus() { return (NcclAvailable() && at::hasCUDA()) ? static_cast<int>(at::detail::getCUDAHooks().getNumGPUs()) : 0; }

std::vector<absl::Status> RunNcclRanks(int world, absl::Duration timeout,
                                       const std::function<absl::Status(Communicator&, int)>& fn) {
  static std::atomic<int> counter{0};
  const std::string group = "nccl-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  std::vector<absl::Status> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      ShmCommunicatorOptions so;
      so.group = group;
      so.rank = r;
      so.world_size = world;
      so.timeout = absl::Seconds(60);
      auto boot = ShmCommunicator::Create(so);
      if (!boot.ok()) {
        out[r] = boot.status();
        return;
      }
      NcclCommunicatorOptions o;
      o.rank = r;
      o.world_size = world;
      o.device = r;
      o.timeout = timeout;
      auto comm = CreateNcclCommunicator(o, NcclIdViaCommunicator(**boot));
      if (!comm.ok()) {
        out[r] = comm.status();
        return;
      }
      out[r] = fn(**comm, r);
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

at::Tensor RankData(int r, int64_t n, int device) {
  return (at::arange(n, at::kFloat) + 1000.0f * r).to(at::Device(at::kCUDA, device));
}

TEST(NcclCommunicator, CollectivesMatchTheirDefinitions) {
  const int world = std::min(Gpus(), 2);
  if (world == 0) GTEST_SKIP() << "no GPU / no NCCL in this build";
  const int64_t n = 1 << 16;
  auto st = RunNcclRanks(world, absl::Seconds(60), [&](Communicator& c, int dev) -> absl::Status {
    auto opt = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, dev);
    at::Tensor out = at::empty({n * world}, opt);
    TIDAL_RETURN_IF_ERROR(c.AllGather(RankData(c.rank(), n, dev), out));
    for (int r = 0; r < world; ++r) {
      if (!at::equal(out.narrow(0, r * n, n).cpu(), RankData(r, n, dev).cpu())) return absl::InternalError("gather");
    }
    at::Tensor rs = at::empty({n}, opt);
    TIDAL_RETURN_IF_ERROR(c.ReduceScatter(RankData(c.rank(), n * world, dev), rs, ReduceOp::kSum));
    at::Tensor expect = at::zeros({n});
    for (int r = 0; r < world; ++r) expect += RankData(r, n * world, dev).cpu().narrow(0, c.rank() * n, n);
    if (!at::equal(rs.cpu(), expect)) return absl::InternalError("reduce_scatter");
    at::Tensor ar = RankData(c.rank(), n, dev).to(at::kBFloat16);
    TIDAL_RETURN_IF_ERROR(c.AllReduce(ar, ReduceOp::kMax));
    if (!at::equal(ar.cpu(), RankData(world - 1, n, dev).to(at::kBFloat16).cpu())) return absl::InternalError("max");
    at::Tensor b = c.rank() == 0 ? RankData(7, n, dev) : at::zeros({n}, opt);
    TIDAL_RETURN_IF_ERROR(c.Broadcast(b, 0));
    if (!at::equal(b.cpu(), RankData(7, n, dev).cpu())) return absl::InternalError("broadcast");
    // Async gather: the compute stream waits on Wait(), not the host.
    at::Tensor g = at::empty({n * world}, opt);
    TIDAL_ASSIGN_OR_RETURN(auto work, c.AllGatherAsync(RankData(c.rank(), n, dev), g));
    TIDAL_RETURN_IF_ERROR(work->Wait());
    if (!at::equal(g.narrow(0, 0, n).cpu(), RankData(0, n, dev).cpu())) return absl::InternalError("async gather");
    // Async reduce-scatter, with compute queued on the current stream before the Wait.
    at::Tensor ars = at::empty({n}, opt);
    TIDAL_ASSIGN_OR_RETURN(auto rs_work, c.ReduceScatterAsync(RankData(c.rank(), n * world, dev), ars, ReduceOp::kSum));
    at::Tensor busy = at::randn({512, 512}, opt).matmul(at::randn({512, 512}, opt));
    TIDAL_RETURN_IF_ERROR(rs_work->Wait());
    if (!at::equal(ars.cpu(), expect)) return absl::InternalError("async reduce_scatter");
    if (world == 2) {
      at::Tensor p = at::empty({n}, opt);
      if (c.rank() == 0) {
        TIDAL_RETURN_IF_ERROR(c.Send(RankData(0, n, dev), 1));
      } else {
        TIDAL_RETURN_IF_ERROR(c.Recv(p, 0));
        if (!at::equal(p.cpu(), RankData(0, n, dev).cpu())) return absl::InternalError("p2p");
      }
    }
    return c.Barrier();
  });
  for (int r = 0; r < world; ++r) EXPECT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
}

TEST(NcclCommunicator, WatchdogTurnsAHangIntoAnError) {
  if (Gpus() < 2) GTEST_SKIP() << "needs two GPUs";
  auto st = RunNcclRanks(2, absl::Seconds(3), [&](Communicator& c, int dev) -> absl::Status {
    if (c.rank() == 1) {
      absl::SleepFor(absl::Seconds(6));  // never joins the collective below
      return absl::OkStatus();
    }
    at::Tensor t = at::ones({1024}, at::TensorOptions().device(at::kCUDA, dev));
    TIDAL_RETURN_IF_ERROR(c.AllReduce(t, ReduceOp::kSum));  // queued; hangs on the GPU
    return c.Barrier();  // the host waits here until the watchdog fires
  });
  EXPECT_EQ(st[0].code(), absl::StatusCode::kDeadlineExceeded) << st[0];
  EXPECT_TRUE(st[1].ok()) << st[1];
}

TEST(NcclCommunicator, UnavailableBuildSaysSo) {
  if (NcclAvailable()) GTEST_SKIP() << "NCCL compiled in";
  NcclCommunicatorOptions o;
  auto c = CreateNcclCommunicator(o, [](std::string&) { return absl::OkStatus(); });
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace tidal
