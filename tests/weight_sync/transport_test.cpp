#include "weight_sync/transport.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace tidal::weight_sync {
namespace {

TEST(TransportTest, NamesRoundTrip) {
  for (TransportKind k : {TransportKind::kZmq, TransportKind::kInProcess, TransportKind::kIpc, TransportKind::kNccl}) {
    EXPECT_EQ(ParseTransportName(TransportName(k)), k) << TransportName(k);
  }
  EXPECT_STREQ(TransportName(TransportKind::kIpc), "cuda-ipc");
  EXPECT_FALSE(ParseTransportName("ipc").has_value());
  EXPECT_FALSE(ParseTransportName("").has_value());
}

TEST(TransportTest, JsonIsTheNameAndRefusesOthers) {
  nlohmann::json j = TransportKind::kNccl;
  EXPECT_EQ(j, "nccl");
  EXPECT_EQ(j.get<TransportKind>(), TransportKind::kNccl);
  EXPECT_THROW(nlohmann::json("carrier-pigeon").get<TransportKind>(), nlohmann::json::type_error);
  EXPECT_THROW(nlohmann::json(2).get<TransportKind>(), nlohmann::json::type_error);
}

}  // namespace
}  // namespace tidal::weight_sync
