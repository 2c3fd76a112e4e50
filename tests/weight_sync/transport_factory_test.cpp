#include "weight_sync/transport_factory.h"

#include <gtest/gtest.h>

namespace tidal::weight_sync {
namespace {

TEST(TransportFactoryTest, CpuSelectsZmqAndAutoSelectsZmqOnCpuPools) {
  for (auto pool : {DeviceSet::Kind::kCpu, DeviceSet::Kind::kCuda}) {
    for (auto policy : {PoolPolicy::kStatic, PoolPolicy::kElastic, PoolPolicy::kColocated}) {
      EXPECT_EQ(*SelectTransport(WeightSyncBackend::kCpu, pool, policy), TransportKind::kZmq);
    }
  }
  for (auto policy : {PoolPolicy::kStatic, PoolPolicy::kElastic, PoolPolicy::kColocated}) {
    EXPECT_EQ(*SelectTransport(WeightSyncBackend::kAuto, DeviceSet::Kind::kCpu, policy), TransportKind::kZmq);
  }
  EXPECT_STREQ(TransportName(TransportKind::kZmq), "zmq");
}

// Engines on other GPUs than the trainers (static, elastic): the broadcast.
TEST(TransportFactoryTest, AutoSelectsTheBroadcastOnCudaPoolsWithSeparateEngines) {
  for (auto policy : {PoolPolicy::kStatic, PoolPolicy::kElastic}) {
    EXPECT_EQ(*SelectTransport(WeightSyncBackend::kAuto, DeviceSet::Kind::kCuda, policy), TransportKind::kNccl);
  }
  EXPECT_STREQ(TransportName(TransportKind::kNccl), "nccl");
}

// `nccl` on a CPU pool is the same broadcast protocol over the shm backend.
TEST(TransportFactoryTest, NcclIsTheBroadcastOnAnyPoolWithEnginesOutsideTheTrainRanks) {
  for (auto pool : {DeviceSet::Kind::kCpu, DeviceSet::Kind::kCuda}) {
    for (auto policy : {PoolPolicy::kStatic, PoolPolicy::kElastic}) {
      EXPECT_EQ(*SelectTransport(WeightSyncBackend::kNccl, pool, policy), TransportKind::kNccl);
    }
    auto colocated = SelectTransport(WeightSyncBackend::kNccl, pool, PoolPolicy::kColocated);
    ASSERT_FALSE(colocated.ok());
    EXPECT_EQ(colocated.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(colocated.status().message().find("weight_sync.backend: `nccl` broadcasts to engines outside the train ranks"),
              std::string::npos)
        << colocated.status();
  }
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

TEST(TransportFactoryTest, IpcIsRefusedNamingTheKey) {
  for (auto pool : {DeviceSet::Kind::kCpu, DeviceSet::Kind::kCuda}) {
    for (auto policy : {PoolPolicy::kStatic, PoolPolicy::kElastic, PoolPolicy::kColocated}) {
      auto ipc = SelectTransport(WeightSyncBackend::kIpc, pool, policy);
      ASSERT_FALSE(ipc.ok());
      EXPECT_EQ(ipc.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(ipc.status().message().find("weight_sync.backend: `ipc` needs a trainer and an engine in two processes on one GPU"),
                std::string::npos)
          << ipc.status();
    }
  }
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
  // CPU: the shm broadcast between two processes (one device kind, no GPU to share).
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kNccl, {K::kCpu, false, false}), TransportKind::kNccl);
  EXPECT_EQ(*ResolveTransport(WeightSyncBackend::kNccl, {K::kCpu, false, true}), TransportKind::kNccl);
  auto one_process = ResolveTransport(WeightSyncBackend::kNccl, {K::kCpu, true, true});
  ASSERT_FALSE(one_process.ok());
  EXPECT_NE(one_process.status().message().find("weight_sync.backend: `nccl` needs the engine in another process"),
            std::string::npos)
      << one_process.status();
  EXPECT_FALSE(ResolveTransport(WeightSyncBackend::kNccl, {K::kCuda, false, true}).ok());  // one GPU
  auto ipc_apart = ResolveTransport(WeightSyncBackend::kIpc, {K::kCuda, false, false});
  ASSERT_FALSE(ipc_apart.ok());
  EXPECT_NE(ipc_apart.status().message().find("same GPU"), std::string::npos);
  EXPECT_FALSE(ResolveTransport(WeightSyncBackend::kIpc, {K::kCuda, true, true}).ok());  // one process
}

}  // namespace
}  // namespace tidal::weight_sync
