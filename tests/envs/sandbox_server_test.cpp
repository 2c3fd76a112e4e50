// The sandbox service over real HTTP: requests, errors, the concurrency limit and the queue,
// and builtin:code_exec scoring through it.
#include "envs/sandbox_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <unistd.h>

#include "envs/environment.h"
#include "envs/sandbox_client.h"

namespace tidal::envs {
namespace {

using nlohmann::json;

class SandboxServerTest : public ::testing::Test {
 protected:
  void StartServer(int workers, int queue_limit) {
    SandboxServerOptions o;
    o.port = 0;
    o.workers = workers;
    o.queue_limit = queue_limit;
    o.limits.base_uid += 200000 + 16 * (::getpid() % 10000);  // apart from parallel tests
    server_ = std::make_unique<SandboxServer>(o);
    ASSERT_TRUE(server_->Start().ok());
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }
  std::unique_ptr<SandboxServer> server_;
  std::string url_;
};

TEST_F(SandboxServerTest, RunsCodeAndRejectsBadRequests) {
  StartServer(2, 4);
  SandboxClient client(url_);
  auto r = client.Run({"python3", "print(6 * 7)"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_text, "42\n");
  EXPECT_EQ(r->exit_code, 0);
  auto bad = client.Run({"cobol", "x"});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_NE(std::string(bad.status().message()).find("'cobol' is not supported"),
            std::string::npos);
  auto down = SandboxClient("http://127.0.0.1:1").Run({"bash", "true"});
  EXPECT_TRUE(absl::IsUnavailable(down.status())) << down.status();
}

TEST_F(SandboxServerTest, ConcurrencyLimitQueuesAndThenRefuses) {
  StartServer(/*workers=*/1, /*queue_limit=*/1);
  // Three 1-second programs at once: one runs, one waits, the third is refused at once.
  std::atomic<int> ok{0}, refused{0};
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100 * i));
      auto r = SandboxClient(url_).Run({"bash", "sleep 1; echo done", "", 5});
      if (r.ok() && r->stdout_text == "done\n") ++ok;
      if (!r.ok() && absl::IsUnavailable(r.status())) ++refused;
    });
  }
  for (auto& t : threads) t.join();
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ok.load(), 2);
  EXPECT_EQ(refused.load(), 1);
  EXPECT_GE(took, 2.0);  // the queued one ran after the first: one at a time
}

TEST_F(SandboxServerTest, CodeExecEnvironmentScoresThroughTheService) {
  StartServer(2, 8);
  EnvSpec spec{.plugin = "builtin:code_exec",
               .args = {{"path", std::string(TIDAL_SOURCE_DIR) + "/envs/data/code_exec_sample.jsonl"},
                        {"sandbox_url", url_},
                        {"timeout_s", 1.0},
                        {"eval_fraction", 0.0}}};
  auto env = Environment::Open(spec);
  ASSERT_TRUE(env.ok()) << env.status();
  auto task = (*env)->Reset(2);
  ASSERT_TRUE(task.ok()) << task.status();
  ASSERT_TRUE(task->reference.has_value());
  auto good = (*env)->Score(*task, *task->reference);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->reward, 1.0) << good->info.dump();
  auto wrong = (*env)->Score(*task, "def nothing():\n    pass\n```\n");
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->reward, 0.0);
  EXPECT_NE(wrong->info["stderr_tail"].get<std::string>().find("NameError"), std::string::npos)
      << wrong->info.dump();
  // A model that writes an infinite loop gets 0 quickly, not a hung run.
  auto loop = (*env)->Score(task->hidden, "```python\nwhile True:\n    pass\n```");
  ASSERT_TRUE(loop.ok());
  EXPECT_EQ(loop->reward, 0.0);
  EXPECT_TRUE(loop->info["timed_out"].get<bool>());
  // The sandbox gone: an error naming the plugin, not a silent 0.
  server_->Stop();
  auto gone = (*env)->Score(*task, *task->reference);
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(std::string(gone.status().message()).find("unreachable"), std::string::npos)
      << gone.status();
}

}  // namespace
}  // namespace tidal::envs
