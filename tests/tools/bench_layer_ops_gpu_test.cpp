// `tidal bench layer-ops` end to end: the real binary on a tiny shape (odd intermediate size, so
// the scalar kernel variants run too), the JSON it prints. Skipped without a CUDA device; the
// argument check needs none.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "core/cuda_devices.h"
#include "tests/tools/tidal_process.h"

namespace {

int Gpus() { return tidal::CudaDeviceCount(); }

using tidal::testing_util::RunCli;

TEST(BenchLayerOpsGpuTest, TinyShapeRunsBothPathsAndReports) {
  if (Gpus() < 1) GTEST_SKIP() << "no CUDA device";
  auto [rc, out] = RunCli("bench layer-ops --shape tiny --tokens 64 --seq-len 16 --iters 2 --warmup 1");
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["tokens"], 64);
  for (const char* op : {"rms_norm", "rope_qkv", "swiglu", "decoder_layer"}) {
    ASSERT_TRUE(j["ops"].contains(op)) << op;
    const auto& r = j["ops"][op];
    EXPECT_GT(r["aten_ms"].get<double>(), 0.0) << op;
    EXPECT_GT(r["fused_ms"].get<double>(), 0.0) << op;
    EXPECT_NEAR(r["speedup"].get<double>(), r["aten_ms"].get<double>() / r["fused_ms"].get<double>(), 1e-9) << op;
  }
  EXPECT_TRUE(j["ops"]["swiglu"].contains("fused_gbps"));
  EXPECT_FALSE(j["ops"]["decoder_layer"].contains("fused_gbps")) << "no byte count for a whole layer";
}

TEST(BenchLayerOpsGpuTest, BadArgumentsAreAUserError) {
  EXPECT_EQ(RunCli("bench layer-ops --iters 0 2>/dev/null").first, 2);
  EXPECT_EQ(RunCli("bench layer-ops --shape 3b 2>/dev/null").first, 2);
}

}  // namespace
