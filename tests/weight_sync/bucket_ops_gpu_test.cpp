// The CUDA kernels of the weight path against their CPU reference, and the NCCL broadcast
// transfer across two GPUs. Skipped without a CUDA device (two for the NCCL test).
#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <gtest/gtest.h>

#include <mutex>
#include <random>
#include <thread>

#include "absl/time/clock.h"
#include "core/communicator_nccl.h"
#include "weight_sync/broadcast_group.h"
#include "weight_sync/broadcast_membership.h"
#include "weight_sync/broadcast_transfer.h"
#include "weight_sync/bucket_ops.h"

namespace tidal::weight_sync {
namespace {

int Gpus() { return at::hasCUDA() ? static_cast<int>(at::detail::getCUDAHooks().getNumGPUs()) : 0; }

// Sizes that cross tiles (16384 elements), end mid-vector and start misaligned within a bucket.
std::vector<ParamSpec> Specs() {
  return {{"embed", {1000, 72}}, {"odd", {13}}, {"w", {300, 97}}, {"norm", {96}}, {"big", {50001}}, {"b", {3}}};
}

TEST(BucketKernelsGpuTest, PackChecksumApplyMatchTheCpuReferenceBitForBit) {
  if (Gpus() < 1) GTEST_SKIP() << "no CUDA device";
  const at::Device gpu(at::kCUDA, 0);
  auto layout = PlanBuckets(Specs(), 100000).value();
  ASSERT_GE(layout.count(), 3);
  at::manual_seed(7);
  std::vector<at::Tensor> cpu_src, gpu_src, cpu_dst, gpu_dst;
  for (size_t p = 0; p < layout.params.size(); ++p) {
    at::Tensor t = at::randn(layout.params[p].shape) * 100;
    if (p == 1) t = t.to(at::kBFloat16);
    cpu_src.push_back(t);
    gpu_src.push_back(t.to(gpu));
    cpu_dst.push_back(at::zeros(layout.params[p].shape, at::kBFloat16));
    gpu_dst.push_back(at::zeros(layout.params[p].shape, at::TensorOptions().dtype(at::kBFloat16).device(gpu)));
  }
  cpu_src[0].view(-1)[5] = std::numeric_limits<float>::infinity();
  gpu_src[0].view(-1)[5] = std::numeric_limits<float>::infinity();
  at::Tensor cpu_staging = at::zeros({layout.staging_bytes}, at::kByte);
  at::Tensor gpu_staging = at::zeros({layout.staging_bytes}, at::TensorOptions().dtype(at::kByte).device(gpu));
  at::Tensor cpu_bad = at::zeros({1}, at::kInt), gpu_bad = at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(gpu));
  PackAll(layout, cpu_src, cpu_staging, 3, cpu_bad);
  PackAll(layout, gpu_src, gpu_staging, 3, gpu_bad);
  EXPECT_TRUE(at::equal(cpu_staging, gpu_staging.cpu()));  // data, padding-free trailers, checksums
  EXPECT_EQ(NonFinite(gpu_bad), 1);
  at::Tensor sums = at::zeros({layout.count()}, at::TensorOptions().dtype(at::kLong).device(gpu));
  ChecksumBuckets(layout, gpu_staging, 0, layout.count(), sums);
  ASSERT_TRUE(VerifyBuckets(layout, gpu_staging, 0, layout.count(), sums, 3).ok());
  ApplyBuckets(layout, gpu_staging, 0, layout.count(), gpu_dst);
  for (size_t p = 0; p < layout.params.size(); ++p) {
    EXPECT_TRUE(at::equal(gpu_dst[p].cpu().view(at::kShort), cpu_src[p].to(at::kBFloat16).view(at::kShort)))
        << layout.params[p].name;
  }
  // A flipped byte in device memory is caught, wherever it is.
  std::mt19937 rng(1);
  for (int trial = 0; trial < 50; ++trial) {
    const BucketPlan& b = layout.buckets[rng() % layout.count()];
    int64_t at = b.byte_offset + static_cast<int64_t>(rng() % (b.numel * 2));
    at::Tensor byte = gpu_staging.narrow(0, at, 1);
    at::Tensor old = byte.clone();
    byte.bitwise_xor_(1 << (trial % 8));
    ChecksumBuckets(layout, gpu_staging, 0, layout.count(), sums);
    EXPECT_EQ(VerifyBuckets(layout, gpu_staging, 0, layout.count(), sums, 3).code(), absl::StatusCode::kDataLoss);
    byte.copy_(old);
  }
  // In-process: straight into the engine's tensors, same checksums as the trailers.
  at::Tensor direct = at::zeros({layout.count()}, at::TensorOptions().dtype(at::kLong).device(gpu));
  at::Tensor again = at::zeros_like(direct);
  for (auto& t : gpu_dst) t.zero_();
  PackDirect(layout, gpu_src, gpu_dst, direct);
  ChecksumTargets(layout, gpu_dst, again);
  EXPECT_TRUE(CompareChecksums(direct, again, 3).ok());
  ChecksumBuckets(layout, gpu_staging, 0, layout.count(), sums);
  EXPECT_TRUE(CompareChecksums(direct, sums, 3).ok());
  for (size_t p = 0; p < layout.params.size(); ++p) {
    EXPECT_TRUE(at::equal(gpu_dst[p].cpu().view(at::kShort), cpu_src[p].to(at::kBFloat16).view(at::kShort)));
  }
}

TEST(BroadcastTransferGpuTest, NcclGroupFromTicketsCarriesAVersionAndRefusesACorruptOne) {
  if (Gpus() < 2 || !NcclAvailable()) GTEST_SKIP() << "needs two CUDA devices and NCCL";
  auto layout = PlanBuckets(Specs(), 100000).value();
  std::vector<at::Tensor> src;
  at::manual_seed(3);
  for (const auto& p : layout.params) src.push_back(at::randn(p.shape).to(at::Device(at::kCUDA, 0)));
  // The controller's side, shared by the two rank threads (in a run it sits behind messages).
  std::mutex mu;
  BroadcastMembership members("train0");
  members.Join("rollout1");
  std::vector<absl::Status> st(2);
  std::vector<at::Tensor> engine;
  for (const auto& p : layout.params) {
    engine.push_back(at::zeros(p.shape, at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA, 1)));
  }
  auto rank = [&](int r) -> absl::Status {
    const std::string me = r == 0 ? "train0" : "rollout1";
    absl::StatusOr<GroupTicket> ticket;
    for (int tries = 0; tries < 500; ++tries) {  // 10 s budget for the id to arrive
      {
        std::lock_guard<std::mutex> l(mu);
        ticket = members.Ticket(me);
      }
      if (ticket.ok() || ticket.status().code() != absl::StatusCode::kFailedPrecondition) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    TIDAL_RETURN_IF_ERROR(ticket.status());
    auto comm = ConnectBroadcastGroup(*ticket, r, [&](int64_t epoch, const std::string& id) {
      std::lock_guard<std::mutex> l(mu);
      return members.SetId(epoch, id);
    }, absl::Seconds(60));
    TIDAL_RETURN_IF_ERROR(comm.status());
    if (r == 0) {
      BroadcastSender tx(layout, at::Device(at::kCUDA, 0));
      TIDAL_RETURN_IF_ERROR(tx.Send(**comm, src, 1));
      return tx.Send(**comm, src, 2);
    }
    BroadcastReceiver rx(layout, at::Device(at::kCUDA, 1));
    TIDAL_RETURN_IF_ERROR(rx.Receive(**comm, 1));
    TIDAL_RETURN_IF_ERROR(rx.Apply(engine));
    // Version 2 arrives, then a bit flips in staging before verification would pass it on.
    TIDAL_RETURN_IF_ERROR(rx.Receive(**comm, 2));
    rx.staging().narrow(0, 17, 1).bitwise_xor_(4);
    at::Tensor sums = at::zeros({layout.count()}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA, 1));
    ChecksumBuckets(layout, rx.staging(), 0, layout.count(), sums);
    if (VerifyBuckets(layout, rx.staging(), 0, layout.count(), sums, 2).code() != absl::StatusCode::kDataLoss) {
      return absl::InternalError("corruption not caught");
    }
    return absl::OkStatus();
  };
  std::thread t0([&] { st[0] = rank(0); }), t1([&] { st[1] = rank(1); });
  t0.join();
  t1.join();
  ASSERT_TRUE(st[0].ok()) << st[0];
  ASSERT_TRUE(st[1].ok()) << st[1];
  for (size_t p = 0; p < src.size(); ++p) {
    EXPECT_TRUE(at::equal(engine[p].cpu().view(at::kShort), src[p].cpu().to(at::kBFloat16).view(at::kShort)));
  }
}

}  // namespace
}  // namespace tidal::weight_sync
