// The broadcast transfer's logic on CPU: the same sender/receiver code as the NCCL path, over the
// shm communicator, one thread per rank.
#include "weight_sync/broadcast_transfer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include "core/communicator_shm.h"
#include "weight_sync/bucket_ops.h"

namespace tidal::weight_sync {
namespace {

std::vector<ParamSpec> Specs() {
  return {{"embed", {64, 32}}, {"norm", {32}}, {"q", {32, 32}}, {"k", {8, 32}}, {"head", {64, 32}}};
}

BucketLayout Layout() { return PlanBuckets(Specs(), 3000).value(); }

std::vector<at::Tensor> Sources(int seed) {
  at::manual_seed(seed);
  std::vector<at::Tensor> out;
  for (const auto& s : Specs()) out.push_back(at::randn(s.shape));
  return out;
}

std::vector<at::Tensor> Targets() {
  std::vector<at::Tensor> out;
  for (const auto& s : Specs()) out.push_back(at::full(s.shape, -7.0, at::kBFloat16));
  return out;
}

// Passes calls through; lets a test damage what a receiver got, or fail a call, like a flaky
// link would.
class FaultyComm : public Communicator {
 public:
  explicit FaultyComm(Communicator& inner) : inner_(inner) {}
  std::function<void(int call, const at::Tensor&)> after_broadcast;
  int fail_call = -1;
  std::vector<const void*> pointers;
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  std::string backend() const override { return inner_.backend(); }
  absl::Status AllGather(const at::Tensor& i, const at::Tensor& o) override { return inner_.AllGather(i, o); }
  absl::Status ReduceScatter(const at::Tensor& i, const at::Tensor& o, ReduceOp op) override {
    return inner_.ReduceScatter(i, o, op);
  }
  absl::Status AllReduce(const at::Tensor& t, ReduceOp op) override { return inner_.AllReduce(t, op); }
  absl::Status Broadcast(const at::Tensor& t, int root) override {
    int call = calls_++;
    pointers.push_back(t.data_ptr());
    if (call == fail_call) return absl::UnavailableError("link dropped");
    TIDAL_RETURN_IF_ERROR(inner_.Broadcast(t, root));
    if (after_broadcast) after_broadcast(call, t);
    return absl::OkStatus();
  }
  absl::Status Send(const at::Tensor& t, int p) override { return inner_.Send(t, p); }
  absl::Status Recv(const at::Tensor& t, int p) override { return inner_.Recv(t, p); }
  absl::Status Barrier() override { return inner_.Barrier(); }

 private:
  Communicator& inner_;
  int calls_ = 0;
};

std::string Group() {
  static std::atomic<int> n{0};
  return "wsync-" + std::to_string(getpid()) + "-" + std::to_string(n++);
}

// Runs fn(rank, comm) on `world` threads over one shm group.
std::vector<absl::Status> RunRanks(int world, const std::function<absl::Status(int, Communicator&)>& fn,
                                   absl::Duration timeout = absl::Seconds(20)) {
  const std::string group = Group();
  std::vector<absl::Status> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      ShmCommunicatorOptions o;
      o.group = group;
      o.rank = r;
      o.world_size = world;
      o.slot_bytes = 4096;
      o.timeout = timeout;
      auto comm = ShmCommunicator::Create(o);
      out[r] = comm.ok() ? fn(r, **comm) : comm.status();
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

TEST(BroadcastTransferTest, EveryReceiverGetsTheVersionInItsDtype) {
  auto sources = Sources(1);
  std::vector<std::vector<at::Tensor>> targets(3);
  auto st = RunRanks(3, [&](int r, Communicator& c) -> absl::Status {
    if (r == 0) {
      BroadcastSender s(Layout(), at::kCPU);
      FaultyComm spy(c);
      TIDAL_RETURN_IF_ERROR(s.Send(spy, sources, 4));
      // Double buffering: consecutive buckets leave from alternating ring slots.
      if (spy.pointers.size() < 3 || spy.pointers[0] == spy.pointers[1] || spy.pointers[0] != spy.pointers[2]) {
        return absl::InternalError("ring slots do not alternate");
      }
      return absl::OkStatus();
    }
    BroadcastReceiver rx(Layout(), at::kCPU);
    TIDAL_RETURN_IF_ERROR(rx.Receive(c, 4));
    targets[r] = Targets();
    return rx.Apply(targets[r]);
  });
  for (auto& s : st) ASSERT_TRUE(s.ok()) << s;
  for (int r = 1; r < 3; ++r) {
    for (size_t p = 0; p < sources.size(); ++p) {
      EXPECT_TRUE(at::equal(targets[r][p].view(at::kShort), sources[p].to(at::kBFloat16).view(at::kShort)));
    }
  }
}

// The sender behind the weights plane's Transport interface: Publish broadcasts what `sources`
// returns; a receiver gets it as from BroadcastSender::Send, and a failing source stops it.
TEST(BroadcastTransferTest, BroadcastTransportPublishesThroughTheSender) {
  auto sources = Sources(2);
  std::vector<at::Tensor> target;
  absl::StatusOr<PublishStats> stats;
  auto st = RunRanks(2, [&](int r, Communicator& c) -> absl::Status {
    if (r == 0) {
      BroadcastTransport t(Layout(), at::kCPU, &c, [&] { return absl::StatusOr<std::vector<at::Tensor>>(sources); });
      if (t.kind() != TransportKind::kNccl) return absl::InternalError("kind");
      stats = t.Publish(6);
      return stats.status();
    }
    BroadcastReceiver rx(Layout(), at::kCPU);
    TIDAL_RETURN_IF_ERROR(rx.Receive(c, 6));
    target = Targets();
    return rx.Apply(target);
  });
  for (auto& s : st) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(stats->version, 6);
  EXPECT_EQ(stats->bytes, Layout().staging_bytes);
  for (size_t p = 0; p < sources.size(); ++p) {
    EXPECT_TRUE(at::equal(target[p].view(at::kShort), sources[p].to(at::kBFloat16).view(at::kShort)));
  }

  // A source that cannot be produced: nothing is broadcast (no collective is entered).
  std::vector<absl::Status> alone = RunRanks(1, [&](int, Communicator& c) -> absl::Status {
    BroadcastTransport t(Layout(), at::kCPU, &c,
                         [] { return absl::StatusOr<std::vector<at::Tensor>>(absl::DataLossError("shards")); });
    return t.Publish(1).status();
  });
  EXPECT_EQ(alone[0].code(), absl::StatusCode::kDataLoss);
}

TEST(BroadcastTransferTest, CorruptionInTransitIsCaughtEveryTimeAndTheEngineKeepsItsWeights) {
  const BucketLayout layout = Layout();
  std::mt19937 rng(5);
  for (int trial = 0; trial < 40; ++trial) {
    auto sources = Sources(trial);
    const int victim = static_cast<int>(rng() % layout.count());
    const uint32_t pick = rng();
    auto engine = Targets();
    absl::Status rx_status;
    auto st = RunRanks(2, [&](int r, Communicator& c) -> absl::Status {
      if (r == 0) return BroadcastSender(layout, at::kCPU).Send(c, sources, trial);
      FaultyComm link(c);
      link.after_broadcast = [&](int call, const at::Tensor& t) {
        if (call != victim) return;
        // One byte of the bucket's data or trailer flips on the way.
        const BucketPlan& b = layout.buckets[victim];
        int64_t data = b.numel * 2, n = data + int64_t(sizeof(BucketTrailer));
        int64_t pos = pick % n;
        int64_t at = pos < data ? pos : b.TrailerOffset(2) + (pos - data);
        t.data_ptr<uint8_t>()[at] ^= static_cast<uint8_t>(1u << (pick % 8));
      };
      BroadcastReceiver rx(layout, at::kCPU);
      rx_status = rx.Receive(link, trial);
      // Nothing verified: Apply refuses and the engine's tensors stay as they were.
      if (rx.Apply(engine).ok()) return absl::InternalError("applied a corrupt version");
      return absl::OkStatus();
    });
    ASSERT_TRUE(st[0].ok()) << st[0];
    ASSERT_TRUE(st[1].ok()) << st[1];
    EXPECT_EQ(rx_status.code(), absl::StatusCode::kDataLoss) << "trial " << trial << ": " << rx_status;
    for (const auto& t : engine) EXPECT_TRUE(at::equal(t, at::full_like(t, -7.0)));
  }
}

TEST(BroadcastTransferTest, ADroppedLinkLeavesTheOldVersionAndTheNextVersionGoesThrough) {
  const BucketLayout layout = Layout();
  auto engine = Targets();
  auto v1 = Sources(1), v2 = Sources(2);
  // Version 1 loses its second bucket (the receiver's link fails; the sender keeps going, as a
  // real peer would until the group is torn down).
  auto st = RunRanks(2, [&](int r, Communicator& c) -> absl::Status {
    if (r == 0) {
      // The sender's own collectives do not all complete: it may see an error or a timeout.
      (void)BroadcastSender(layout, at::kCPU).Send(c, v1, 1);
      return absl::OkStatus();
    }
    FaultyComm link(c);
    link.fail_call = 1;
    BroadcastReceiver rx(layout, at::kCPU);
    absl::Status s = rx.Receive(link, 1);
    if (s.ok()) return absl::InternalError("partial transfer accepted");
    if (rx.Apply(engine).ok()) return absl::InternalError("applied a partial version");
    return absl::OkStatus();
  }, absl::Seconds(1));
  ASSERT_TRUE(st[1].ok()) << st[1];
  for (const auto& t : engine) EXPECT_TRUE(at::equal(t, at::full_like(t, -7.0)));
  // A fresh group (the rebuilt communicator) carries version 2.
  st = RunRanks(2, [&](int r, Communicator& c) -> absl::Status {
    if (r == 0) return BroadcastSender(layout, at::kCPU).Send(c, v2, 2);
    BroadcastReceiver rx(layout, at::kCPU);
    TIDAL_RETURN_IF_ERROR(rx.Receive(c, 2));
    return rx.Apply(engine);
  });
  for (auto& s : st) ASSERT_TRUE(s.ok()) << s;
  for (size_t p = 0; p < v2.size(); ++p) EXPECT_TRUE(at::equal(engine[p], v2[p].to(at::kBFloat16)));
}

TEST(BroadcastTransferTest, ANonFiniteVersionIsCommittedAsNotOkAndRefused) {
  const BucketLayout layout = Layout();
  auto sources = Sources(3);
  sources[2].view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  auto engine = Targets();
  absl::Status tx, rx_status;
  auto st = RunRanks(2, [&](int r, Communicator& c) -> absl::Status {
    if (r == 0) {
      tx = BroadcastSender(layout, at::kCPU).Send(c, sources, 8);
      return absl::OkStatus();
    }
    BroadcastReceiver rx(layout, at::kCPU);
    rx_status = rx.Receive(c, 8);
    if (rx.Apply(engine).ok()) return absl::InternalError("applied a non-finite version");
    return absl::OkStatus();
  });
  for (auto& s : st) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(tx.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(rx_status.code(), absl::StatusCode::kFailedPrecondition);
  for (const auto& t : engine) EXPECT_TRUE(at::equal(t, at::full_like(t, -7.0)));
}

TEST(BroadcastTransferTest, BeginPollApplyKeepsTheOldWeightsUntilTheStepBoundary) {
  const BucketLayout layout = Layout();
  auto v1 = Sources(11), v2 = Sources(12);
  auto engine = Targets();
  auto st = RunRanks(2, [&](int r, Communicator& c) -> absl::Status {
    if (r == 0) {
      BroadcastSender tx(layout, at::kCPU);
      TIDAL_RETURN_IF_ERROR(tx.Send(c, v1, 1));
      return tx.Send(c, v2, 2);
    }
    BroadcastReceiver rx(layout, at::kCPU);
    TIDAL_RETURN_IF_ERROR(rx.Begin(c, 1));
    // A second version cannot start while one is in flight (its outcome not yet taken).
    if (rx.Begin(c, 2).code() != absl::StatusCode::kFailedPrecondition) return absl::InternalError("double begin");
    if (rx.Apply(engine).ok()) return absl::InternalError("applied before the outcome was taken");
    std::optional<absl::Status> outcome = rx.Poll();
    if (!outcome || !outcome->ok()) return absl::InternalError("no outcome for version 1");
    if (rx.Poll().has_value()) return absl::InternalError("outcome reported twice");
    TIDAL_RETURN_IF_ERROR(rx.Apply(engine));
    if (rx.received_version() != 1) return absl::InternalError("version stamp");
    return rx.Receive(c, 2);  // staged, not applied: the engine stays on version 1
  });
  for (auto& s : st) ASSERT_TRUE(s.ok()) << s;
  for (size_t p = 0; p < v1.size(); ++p) EXPECT_TRUE(at::equal(engine[p], v1[p].to(at::kBFloat16)));
}

TEST(BroadcastTransferTest, FlatApplyHandsEachBucketWithItsParameters) {
  const BucketLayout layout = Layout();
  auto sources = Sources(4);
  std::map<std::string, at::Tensor> got;
  auto st = RunRanks(2, [&](int r, Communicator& c) -> absl::Status {
    if (r == 0) return BroadcastSender(layout, at::kCPU).Send(c, sources, 1);
    BroadcastReceiver rx(layout, at::kCPU);
    TIDAL_RETURN_IF_ERROR(rx.Receive(c, 1));
    return rx.ApplyFlat([&](const at::Tensor& flat, std::span<const ParamSpec> params) -> absl::Status {
      int64_t off = 0;
      for (const auto& p : params) {
        int64_t n = 1;
        for (int64_t d : p.shape) n *= d;
        got[p.name] = flat.narrow(0, off, n).view(p.shape).clone();
        off += n;
      }
      return off == flat.numel() ? absl::OkStatus() : absl::InternalError("flat size");
    });
  });
  for (auto& s : st) ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(got.size(), sources.size());
  for (size_t p = 0; p < sources.size(); ++p) EXPECT_TRUE(at::equal(got[Specs()[p].name], sources[p].to(at::kBFloat16)));
}

}  // namespace
}  // namespace tidal::weight_sync
