// `tidal bench weight-sync` end to end on a GPU: real processes (the CUDA IPC engine process,
// the NCCL receiver process), a tiny model shape, the JSON the device script records.
// Skipped without a CUDA device (the NCCL path without two).
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

void ExpectResult(const nlohmann::json& r, const std::string& path) {
  EXPECT_EQ(r["path"], path);
  EXPECT_GT(r["engine_bytes"].get<int64_t>(), 0);
  EXPECT_GT(r["update_ms"]["median"].get<double>(), 0.0);
  EXPECT_GT(r["baseline"]["ms"]["median"].get<double>(), 0.0);
  for (const char* stage : {"gather", "verify", "pause"}) EXPECT_TRUE(r["stages_ms"].contains(stage)) << stage;
}

TEST(BenchWeightSyncGpuTest, InProcessAndIpcRunAndReport) {
  if (Gpus() < 1) GTEST_SKIP() << "no CUDA device";
  auto [rc, out] = RunCli("bench weight-sync --shape tiny --paths inproc,ipc --bucket-mb 1 --iters 2 --warmup 1");
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j.size(), 2u);
  ExpectResult(j[0], "inproc");
  ExpectResult(j[1], "ipc");
}

TEST(BenchWeightSyncGpuTest, NcclAcrossTwoGpusRunsAndReports) {
  if (Gpus() < 2) GTEST_SKIP() << "needs two CUDA devices";
  auto [rc, out] = RunCli("bench weight-sync --shape tiny --paths nccl --bucket-mb 1 --iters 2 --warmup 1");
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j.size(), 1u);
  ExpectResult(j[0], "nccl");
  EXPECT_GE(j[0]["overlap"]["pause_ms"]["median"].get<double>(), 0.0);
}

TEST(BenchWeightSyncGpuTest, UnknownPathIsAUserError) {
  if (Gpus() < 1) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(RunCli("bench weight-sync --shape tiny --paths carrier-pigeon 2>/dev/null").first, 2);
}

}  // namespace
