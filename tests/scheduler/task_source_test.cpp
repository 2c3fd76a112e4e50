// TaskSource runs the environment off the caller's thread: a reset() that hangs delays only its
// own task (and fails after env.timeout_s), the caller never blocks.
#include "scheduler/task_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace tidal::scheduler {
namespace {

using Clock = std::chrono::steady_clock;

// tests/envs/plugins/misbehave.c, built as users build plugins (not through plugin_build.h,
// whose std::filesystem cleanup is unsafe in a LibTorch process).
std::string MisbehavePlugin() {
  static const std::string so = [] {
    const std::string out = std::string(TIDAL_BINARY_DIR) + "/task_source_misbehave_" + std::to_string(getpid()) + ".so";
    const std::string cmd = "cc -std=c11 -shared -fPIC -O1 -I" TIDAL_SOURCE_DIR "/envs/include " TIDAL_SOURCE_DIR
                            "/tests/envs/plugins/misbehave.c -o " + out;
    return std::system(cmd.c_str()) == 0 ? out : std::string();
  }();
  return so;
}

std::vector<TaskSource::Done> WaitFor(TaskSource& src, size_t n, double timeout_s) {
  std::vector<TaskSource::Done> got;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (got.size() < n && Clock::now() < deadline) {
    for (auto& d : src.TakeDone()) got.push_back(std::move(d));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return got;
}

TEST(TaskSourceTest, ResetsRunOffTheCallersThreadInOrder) {
  envs::EnvSpec spec;
  spec.plugin = "builtin:letter_count";
  auto src = TaskSource::Open(spec);
  ASSERT_TRUE(src.ok()) << src.status();
  for (int i = 0; i < 5; ++i) (*src)->Request(100 + i, static_cast<uint64_t>(i));
  auto got = WaitFor(**src, 5, 30);
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(got[i].id, 100 + i);
    ASSERT_TRUE(got[i].task.ok()) << got[i].task.status();
    EXPECT_FALSE(got[i].task->prompt.empty());
  }
  EXPECT_EQ((*src)->in_flight(), 0);
  auto direct = (*src)->Get(3, envs::Split::kTrain);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(direct->prompt, got[3].task->prompt);
}

TEST(TaskSourceTest, AHungResetFailsAloneAndNeverBlocksTheCaller) {
  const std::string so = MisbehavePlugin();
  ASSERT_FALSE(so.empty());
  for (bool isolate : {true, false}) {
    envs::EnvSpec spec;
    spec.plugin = so;
    spec.args = {{"mode", "hang"}, {"at", "reset"}};
    spec.isolate = isolate;
    spec.timeout_s = 0.5;
    auto src = TaskSource::Open(spec);
    ASSERT_TRUE(src.ok()) << src.status();
    const auto t0 = Clock::now();
    (*src)->Request(1, 13);  // seed 13 hangs
    (*src)->Request(2, 1);
    const double request_s = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_LT(request_s, 0.1) << "Request blocked on the plugin";
    auto got = WaitFor(**src, isolate ? 2 : 1, 20);
    ASSERT_GE(got.size(), 1u);
    EXPECT_EQ(got[0].id, 1);
    ASSERT_FALSE(got[0].task.ok());
    EXPECT_NE(got[0].task.status().message().find(so), std::string::npos) << got[0].task.status();
    if (isolate) {  // the env-worker was killed and restarted: the next reset works
      ASSERT_EQ(got.size(), 2u);
      EXPECT_TRUE(got[1].task.ok()) << got[1].task.status();
    }
  }
}

}  // namespace
}  // namespace tidal::scheduler
