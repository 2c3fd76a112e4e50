#include "weight_sync/transport_factory.h"

#include <gtest/gtest.h>

namespace tidal::weight_sync {
namespace {

TEST(TransportFactoryTest, CpuAndAutoSelectZmq) {
  for (auto pool : {DeviceSet::Kind::kCpu, DeviceSet::Kind::kCuda}) {
    for (auto policy : {PoolPolicy::kStatic, PoolPolicy::kElastic, PoolPolicy::kColocated}) {
      EXPECT_EQ(*SelectTransport(WeightSyncBackend::kCpu, pool, policy), TransportKind::kZmq);
    }
    EXPECT_EQ(*SelectTransport(WeightSyncBackend::kAuto, pool, PoolPolicy::kElastic), TransportKind::kZmq);
    EXPECT_EQ(*SelectTransport(WeightSyncBackend::kAuto, pool, PoolPolicy::kStatic), TransportKind::kZmq);
  }
  EXPECT_EQ(*SelectTransport(WeightSyncBackend::kAuto, DeviceSet::Kind::kCpu, PoolPolicy::kColocated),
            TransportKind::kZmq);
  EXPECT_STREQ(TransportName(TransportKind::kZmq), "zmq");
}

TEST(TransportFactoryTest, ColocatedSelectsInProcess) {
  EXPECT_EQ(*SelectTransport(WeightSyncBackend::kAuto, DeviceSet::Kind::kCuda, PoolPolicy::kColocated),
            TransportKind::kInProcess);
  for (auto pool : {DeviceSet::Kind::kCpu, DeviceSet::Kind::kCuda}) {
    EXPECT_EQ(*SelectTransport(WeightSyncBackend::kInprocess, pool, PoolPolicy::kColocated),
              TransportKind::kInProcess);
  }
  EXPECT_STREQ(TransportName(TransportKind::kInProcess), "inprocess");
  auto elastic = SelectTransport(WeightSyncBackend::kInprocess, DeviceSet::Kind::kCuda, PoolPolicy::kElastic);
  ASSERT_FALSE(elastic.ok());
  EXPECT_NE(elastic.status().message().find("`inprocess` needs every engine in a train rank's worker"),
            std::string::npos)
      << elastic.status();
}

TEST(TransportFactoryTest, MissingTransportsAreRefusedNamingTheKey) {
  auto nccl = SelectTransport(WeightSyncBackend::kNccl, DeviceSet::Kind::kCpu, PoolPolicy::kElastic);
  ASSERT_FALSE(nccl.ok());
  EXPECT_EQ(nccl.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(nccl.status().message().find("weight_sync.backend: `nccl` is not available on a CPU pool"),
            std::string::npos)
      << nccl.status();
  auto ipc = SelectTransport(WeightSyncBackend::kIpc, DeviceSet::Kind::kCuda, PoolPolicy::kColocated);
  ASSERT_FALSE(ipc.ok());
  EXPECT_NE(ipc.status().message().find("`ipc`"), std::string::npos);
}

TEST(TransportFactoryTest, AutoResolvesByPlacement) {
  using K = DeviceSet::Kind;
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kAuto, {K::kCpu, true, true}), TransportKind::kZmq);
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kAuto, {K::kCuda, true, true}), TransportKind::kInProcess);
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kAuto, {K::kCuda, false, true}), TransportKind::kIpc);
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kAuto, {K::kCuda, false, false}), TransportKind::kNccl);
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kCpu, {K::kCuda, false, false}), TransportKind::kZmq);
  EXPECT_STREQ(TransportName(TransportKind::kIpc), "cuda-ipc");
}

TEST(TransportFactoryTest, ExplicitGpuBackendsAreCheckedAgainstThePlacement) {
  using K = DeviceSet::Kind;
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kNccl, {K::kCuda, false, false}), TransportKind::kNccl);
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kIpc, {K::kCuda, false, true}), TransportKind::kIpc);
  auto cpu_nccl = ResolveTransport(WeightSyncBackend::kNccl, {K::kCpu, false, false});
  ASSERT_FALSE(cpu_nccl.ok());
  EXPECT_NE(cpu_nccl.status().message().find("weight_sync.backend: `nccl` needs a CUDA pool"), std::string::npos);
  EXPECT_FALSE(ResolveTransport(WeightSyncBackend::kNccl, {K::kCuda, false, true}).ok());  // one GPU
  auto ipc_apart = ResolveTransport(WeightSyncBackend::kIpc, {K::kCuda, false, false});
  ASSERT_FALSE(ipc_apart.ok());
  EXPECT_NE(ipc_apart.status().message().find("same GPU"), std::string::npos);
  EXPECT_FALSE(ResolveTransport(WeightSyncBackend::kIpc, {K::kCuda, true, true}).ok());  // one process
}

}  // namespace
}  // namespace tidal::weight_sync
