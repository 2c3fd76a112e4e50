// A CUDA pool asked for where the GPUs are missing (none at all in CI; cuda:63 anywhere) fails at
// once with a message naming the key and what was found, before any worker process starts.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "core/remove_tree.h"

namespace {

std::string Slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(RunCudaPoolCheck, MissingGpusFailBeforeAnyWorkerStarts) {
  const std::string dir = std::string(TIDAL_BINARY_DIR) + "/cuda_pool_check_" + std::to_string(getpid());
  (void)tidal::RemoveTree(dir);
  const std::string out = dir + ".out";
  const std::string cmd = std::string("timeout 60 ") + TIDAL_BIN + " run " + TIDAL_SOURCE_DIR +
                          "/recipes/quickstart.yaml pool.devices=cuda:62-63 pool.tags.rollout=1 pool.tags.train=1"
                          " run_dir=" + dir + " --quiet > " + out + " 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string text = Slurp(out);
  EXPECT_NE(rc, 0) << text;
  EXPECT_NE(WEXITSTATUS(rc), 124) << "timed out instead of failing fast: " << text;
  EXPECT_NE(text.find("pool.devices 'cuda:62-63' asks for cuda:63"), std::string::npos) << text;
  EXPECT_EQ(access((dir + "/logs").c_str(), F_OK), -1) << "a run directory (and workers) were set up";
  (void)tidal::RemoveTree(out);
}

}  // namespace
