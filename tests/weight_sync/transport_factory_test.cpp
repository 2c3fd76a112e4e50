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

}  // namespace
}  // namespace tidal::weight_sync
