#include "core/communicator_shm.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tidal {
namespace {

std::string UniqueGroup(const std::string& tag) {
  static std::atomic<int> counter{0};
  return tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

ShmCommunicatorOptions Opts(const std::string& group, int rank, int world) {
  ShmCommunicatorOptions o;
  o.group = group;
  o.rank = rank;
  o.world_size = world;
  o.slot_bytes = 4096;  // small: every test below crosses several chunks
  o.p2p_bytes = 256;
  o.timeout = absl::Seconds(20);
  return o;
}

// Runs fn(comm) on `world` threads, one communicator each; returns each rank's status.
std::vector<absl::Status> RunRanks(int world, const std::function<absl::Status(Communicator&)>& fn,
                                   std::function<ShmCommunicatorOptions(int)> opts = nullptr) {
  const std::string group = UniqueGroup("t");
  std::vector<absl::Status> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto comm = ShmCommunicator::Create(opts ? opts(r) : Opts(group, r, world));
      if (!comm.ok()) {
        out[r] = comm.status();
        return;
      }
      out[r] = fn(**comm);
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

void ExpectAllOk(const std::vector<absl::Status>& st) {
  for (size_t r = 0; r < st.size(); ++r) EXPECT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
}

// Rank-dependent data: element i of rank r is r * 1000 + i (exact in fp32).
at::Tensor RankData(int r, int64_t n, at::ScalarType t = at::kFloat) {
  return (at::arange(n, at::kDouble) + 1000.0 * r).to(t);
}

class ShmWorld : public ::testing::TestWithParam<int> {};

TEST_P(ShmWorld, AllGatherConcatenatesInRankOrder) {
  const int w = GetParam();
  const int64_t n = 3000;  // 12 KB per rank: three slot rounds
  ExpectAllOk(RunRanks(w, [&](Communicator& c) -> absl::Status {
    at::Tensor out = at::empty({n * w});
    TIDAL_RETURN_IF_ERROR(c.AllGather(RankData(c.rank(), n), out));
    for (int r = 0; r < w; ++r) {
      if (!at::equal(out.narrow(0, r * n, n), RankData(r, n))) return absl::InternalError("piece " + std::to_string(r));
    }
    return absl::OkStatus();
  }));
}

TEST_P(ShmWorld, ReduceScatterSumsEachRanksPiece) {
  const int w = GetParam();
  const int64_t n = 1500;
  ExpectAllOk(RunRanks(w, [&](Communicator& c) -> absl::Status {
    at::Tensor out = at::empty({n});
    TIDAL_RETURN_IF_ERROR(c.ReduceScatter(RankData(c.rank(), n * w), out, ReduceOp::kSum));
    at::Tensor expect = at::zeros({n});
    for (int r = 0; r < w; ++r) expect += RankData(r, n * w).narrow(0, c.rank() * n, n);
    if (!at::equal(out, expect)) return absl::InternalError("sum differs");
    TIDAL_RETURN_IF_ERROR(c.ReduceScatter(RankData(c.rank(), n * w), out, ReduceOp::kMax));
    if (!at::equal(out, RankData(w - 1, n * w).narrow(0, c.rank() * n, n))) return absl::InternalError("max differs");
    // The async form runs to completion on shm; Wait() reports its status.
    at::Tensor async_out = at::empty({n});
    TIDAL_ASSIGN_OR_RETURN(auto work, c.ReduceScatterAsync(RankData(c.rank(), n * w), async_out, ReduceOp::kSum));
    TIDAL_RETURN_IF_ERROR(work->Wait());
    if (!at::equal(async_out, expect)) return absl::InternalError("async sum differs");
    return absl::OkStatus();
  }));
}

TEST_P(ShmWorld, AllReduceAvgIsBitwiseIdenticalAcrossRanks) {
  const int w = GetParam();
  const int64_t n = 2500;
  std::vector<at::Tensor> results(w);
  ExpectAllOk(RunRanks(w, [&](Communicator& c) -> absl::Status {
    at::Tensor t = at::randn({n}, at::TensorOptions().dtype(at::kFloat)).mul_(c.rank() + 1);
    TIDAL_RETURN_IF_ERROR(c.AllReduce(t, ReduceOp::kAvg));
    results[c.rank()] = t;
    return absl::OkStatus();
  }));
  for (int r = 1; r < w; ++r) EXPECT_TRUE(at::equal(results[0], results[r])) << "rank " << r;
}

TEST_P(ShmWorld, AllReduceBf16AccumulatesInFp32) {
  const int w = GetParam();
  ExpectAllOk(RunRanks(w, [&](Communicator& c) -> absl::Status {
    // 256 + 1 + 1 + 1 in bf16 pairwise would round each +1 away; fp32 accumulation keeps them.
    at::Tensor t = at::full({8}, c.rank() == 0 ? 256.0 : 1.0, at::kBFloat16);
    TIDAL_RETURN_IF_ERROR(c.AllReduce(t, ReduceOp::kSum));
    const double expect = 256.0 + (w - 1);
    const double got = t[0].item<double>();
    // 256 + 3 = 259 rounds to 260 in bf16 (8 bits of mantissa): compare to the rounded exact sum.
    const double rounded = at::scalar_tensor(expect, at::kBFloat16).item<double>();
    if (got != rounded) return absl::InternalError("bf16 sum " + std::to_string(got));
    return absl::OkStatus();
  }));
}

TEST_P(ShmWorld, BroadcastAndSendRecvRing) {
  const int w = GetParam();
  ExpectAllOk(RunRanks(w, [&](Communicator& c) -> absl::Status {
    const int root = w - 1;
    at::Tensor t = c.rank() == root ? RankData(root, 2000) : at::zeros({2000});
    TIDAL_RETURN_IF_ERROR(c.Broadcast(t, root));
    if (!at::equal(t, RankData(root, 2000))) return absl::InternalError("broadcast");
    if (w == 1) return absl::OkStatus();
    // Ring: even ranks send first, odd ranks receive first, so the ring cannot deadlock.
    const int next = (c.rank() + 1) % w, prev = (c.rank() + w - 1) % w;
    at::Tensor got = at::empty({300}, at::kLong);
    at::Tensor mine = RankData(c.rank(), 300, at::kLong);
    if (c.rank() % 2 == 0) {
      TIDAL_RETURN_IF_ERROR(c.Send(mine, next));
      TIDAL_RETURN_IF_ERROR(c.Recv(got, prev));
    } else {
      TIDAL_RETURN_IF_ERROR(c.Recv(got, prev));
      TIDAL_RETURN_IF_ERROR(c.Send(mine, next));
    }
    if (!at::equal(got, RankData(prev, 300, at::kLong))) return absl::InternalError("p2p");
    return absl::OkStatus();
  }));
}

INSTANTIATE_TEST_SUITE_P(Worlds, ShmWorld, ::testing::Values(1, 2, 4));

TEST(ShmCommunicator, MissingPeerTimesOutAndPoisonsTheGroup) {
  const std::string group = UniqueGroup("timeout");
  std::vector<absl::Status> st(2);
  auto opts = [&](int r) {
    auto o = Opts(group, r, 2);
    o.timeout = absl::Milliseconds(300);
    return o;
  };
  std::atomic<bool> rank1_attached{false};
  std::thread t1([&] {
    auto c = ShmCommunicator::Create(opts(1));
    rank1_attached = true;
    st[1] = c.status();  // rank 1 attaches and never calls a collective
    absl::SleepFor(absl::Seconds(1));
  });
  auto c0 = ShmCommunicator::Create(opts(0));
  ASSERT_TRUE(c0.ok()) << c0.status();
  absl::Status b = (*c0)->Barrier();
  EXPECT_EQ(b.code(), absl::StatusCode::kDeadlineExceeded) << b;
  EXPECT_NE(b.message().find("barrier"), std::string::npos) << b;
  absl::Status again = (*c0)->AllReduce(at::ones({4}), ReduceOp::kSum);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  t1.join();
  EXPECT_TRUE(st[1].ok()) << st[1];
}

TEST(ShmCommunicator, RejectsMismatchedOptionsAndSizes) {
  const std::string group = UniqueGroup("mismatch");
  auto st = RunRanks(2, [](Communicator&) { return absl::OkStatus(); }, [&](int r) {
    auto o = Opts(group, r, 2);
    o.timeout = absl::Milliseconds(500);
    if (r == 1) o.slot_bytes = 8192;
    return o;
  });
  EXPECT_EQ(st[1].code(), absl::StatusCode::kInvalidArgument) << st[1];
  EXPECT_NE(st[1].message().find("slot_bytes 4096 vs 8192"), std::string::npos) << st[1];
  // Rank 1 never joined, so rank 0 gives up at its timeout.
  EXPECT_EQ(st[0].code(), absl::StatusCode::kDeadlineExceeded) << st[0];
  auto st2 = RunRanks(2, [](Communicator& c) -> absl::Status {
    at::Tensor out = at::empty({5});
    return c.AllGather(at::ones({3}), out);
  });
  EXPECT_EQ(st2[0].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st2[1].code(), absl::StatusCode::kInvalidArgument);
}

TEST(ShmCommunicator, RecvSizeMismatchIsAnError) {
  auto st = RunRanks(2, [](Communicator& c) -> absl::Status {
    if (c.rank() == 0) return c.Send(at::ones({10}), 1);
    at::Tensor t = at::empty({12});
    return c.Recv(t, 0);
  });
  EXPECT_TRUE(st[0].ok()) << st[0];
  EXPECT_EQ(st[1].code(), absl::StatusCode::kInvalidArgument) << st[1];
  EXPECT_NE(st[1].message().find("expected 48 bytes"), std::string::npos) << st[1];
}

// Child side of the multi-process test; runs only when spawned by it.
TEST(ShmCommunicatorChild, DISABLED_Rank) {
  const char* group = std::getenv("TIDAL_SHM_TEST_GROUP");
  ASSERT_NE(group, nullptr);
  const int rank = std::atoi(std::getenv("TIDAL_SHM_TEST_RANK"));
  const int world = std::atoi(std::getenv("TIDAL_SHM_TEST_WORLD"));
  auto comm = ShmCommunicator::Create(Opts(group, rank, world));
  ASSERT_TRUE(comm.ok()) << comm.status();
  at::Tensor t = RankData(rank, 5000);
  ASSERT_TRUE((*comm)->AllReduce(t, ReduceOp::kSum).ok());
  at::Tensor expect = at::zeros({5000});
  for (int r = 0; r < world; ++r) expect += RankData(r, 5000);
  ASSERT_TRUE(at::equal(t, expect));
  at::Tensor g = at::empty({5000 * world});
  ASSERT_TRUE((*comm)->AllGather(RankData(rank, 5000), g).ok());
  ASSERT_TRUE(at::equal(g.narrow(0, 0, 5000), RankData(0, 5000)));
}

TEST(ShmCommunicator, WorksBetweenSeparateProcesses) {
  const int world = 2;  // each rank is a fresh process that loads LibTorch: keep it to two
  const std::string group = UniqueGroup("proc");
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    std::vector<std::string> env_s = {"TIDAL_SHM_TEST_GROUP=" + group, "TIDAL_SHM_TEST_RANK=" + std::to_string(r),
                                      "TIDAL_SHM_TEST_WORLD=" + std::to_string(world)};
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    for (char** e = environ; *e; ++e) envp.push_back(*e);
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe", f1 = "--gtest_filter=ShmCommunicatorChild.DISABLED_Rank",
                f2 = "--gtest_also_run_disabled_tests";
    char* argv[] = {exe.data(), f1.data(), f2.data(), nullptr};
    pid_t pid;
    ASSERT_EQ(posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);
    pids.push_back(pid);
  }
  for (int r = 0; r < world; ++r) {
    int status = 0;
    ASSERT_EQ(waitpid(pids[r], &status, 0), pids[r]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "rank " << r << " status " << status;
  }
}

}  // namespace
}  // namespace tidal
