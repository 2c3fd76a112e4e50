// The in-process transport's checks, on the CPU (the GPU path runs in
// tests/tools/run_colocated_gpu_test.cpp): what the trainer gathers reaches the engine only when
// every tensor is on the engine's device kind, in its dtype, and finite.
#include "weight_sync/inprocess_transport.h"

#include <gtest/gtest.h>

#include <limits>

namespace tidal::weight_sync {
namespace {

NamedTensors Weights(at::ScalarType dtype) {
  return {{"a", at::ones({4, 8}, dtype)}, {"b", at::full({3}, 0.5, dtype)}};
}

struct Fixture {
  NamedTensors gathered;
  std::vector<at::ScalarType> asked;
  int installs = 0;
  int64_t installed_version = -1;
  InProcessTransport Make(at::ScalarType dtype) {
    return InProcessTransport(
        dtype, at::kCPU,
        [this](at::ScalarType d) -> absl::StatusOr<NamedTensors> {
          asked.push_back(d);
          return gathered;
        },
        [this](const NamedTensors& w, int64_t v) {
          ++installs;
          installed_version = v;
          EXPECT_EQ(w.size(), gathered.size());
          return absl::OkStatus();
        });
  }
};

TEST(InProcessTransport, InstallsACheckedVersionAndCountsItsBytes) {
  Fixture f;
  f.gathered = Weights(at::kBFloat16);
  InProcessTransport t = f.Make(at::kBFloat16);
  auto r = t.Publish(7);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->version, 7);
  EXPECT_EQ(r->bytes, (32 + 3) * 2);
  EXPECT_EQ(f.installs, 1);
  EXPECT_EQ(f.installed_version, 7);
  ASSERT_EQ(f.asked.size(), 1u);
  EXPECT_EQ(f.asked[0], at::kBFloat16) << "the trainer is asked for the engine's dtype";
}

TEST(InProcessTransport, RefusesAnotherDtypeWithoutInstalling) {
  Fixture f;
  f.gathered = Weights(at::kFloat);
  InProcessTransport t = f.Make(at::kBFloat16);
  auto r = t.Publish(3);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'a' is Float"), std::string::npos) << r.status();
  EXPECT_EQ(f.installs, 0);
}

TEST(InProcessTransport, RefusesNonFiniteWeightsNamingTheTensor) {
  Fixture f;
  f.gathered = Weights(at::kBFloat16);
  f.gathered["b"][1] = std::numeric_limits<float>::quiet_NaN();
  InProcessTransport t = f.Make(at::kBFloat16);
  auto r = t.Publish(4);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("'b' has non-finite"), std::string::npos) << r.status();
  EXPECT_EQ(f.installs, 0);
}

TEST(InProcessTransport, RefusesTensorsOnAnotherDevice) {
  Fixture f;
  f.gathered = Weights(at::kBFloat16);
  InProcessTransport t(at::kBFloat16, at::kCUDA, [&](at::ScalarType) -> absl::StatusOr<NamedTensors> { return f.gathered; },
                       [&](const NamedTensors&, int64_t) {
                         ++f.installs;
                         return absl::OkStatus();
                       });
  auto r = t.Publish(1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("on cpu"), std::string::npos) << r.status();
  EXPECT_EQ(f.installs, 0);
}

}  // namespace
}  // namespace tidal::weight_sync
