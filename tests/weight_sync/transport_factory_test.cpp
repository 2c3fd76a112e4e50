#include "weight_sync/transport_factory.h"

#include <gtest/gtest.h>

namespace tidal::weight_sync {
namespace {

TEST(TransportFactoryTest, CpuAndAutoSelectZmq) {
  for (auto pool : {DeviceSet::Kind::kCpu, DeviceSet::Kind::kCuda}) {
    EXPECT_EQ(*SelectTransport(WeightSyncBackend::kCpu, pool), TransportKind::kZmq);
    EXPECT_EQ(*SelectTransport(WeightSyncBackend::kAuto, pool), TransportKind::kZmq);
  }
  EXPECT_STREQ(TransportName(TransportKind::kZmq), "zmq");
}

TEST(TransportFactoryTest, MissingTransportsAreRefusedNamingTheKey) {
  auto nccl = SelectTransport(WeightSyncBackend::kNccl, DeviceSet::Kind::kCpu);
  ASSERT_FALSE(nccl.ok());
  EXPECT_EQ(nccl.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(nccl.status().message().find("weight_sync.backend: `nccl` is not available on a CPU pool"),
            std::string::npos)
      << nccl.status();
  auto ipc = SelectTransport(WeightSyncBackend::kIpc, DeviceSet::Kind::kCuda);
  ASSERT_FALSE(ipc.ok());
  EXPECT_NE(ipc.status().message().find("`ipc`"), std::string::npos);
}

}  // namespace
}  // namespace tidal::weight_sync
