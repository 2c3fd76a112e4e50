#include "weight_sync/zmq_transport.h"

#include <gtest/gtest.h>

#include <vector>

#include "weight_sync/weight_assembler.h"

namespace tidal::weight_sync {
namespace {

// Three layers of 700, 1400 and 2100 floats (16.8 KB).
NamedTensors Weights() {
  NamedTensors w;
  for (int i = 1; i <= 3; ++i) {
    w["layer" + std::to_string(i) + ".weight"] = at::linspace(-1.0, 1.0, 700 * i).reshape({7 * i, 100});
  }
  return w;
}

struct Sent {
  std::vector<std::pair<WeightBucket, Payload>> buckets;
  int local_installs = 0;
  int64_t local_version = -1;
};

ZmqTransport Make(Sent* sent, bool sends, bool local, absl::Status send_status = absl::OkStatus()) {
  ZmqTransport::LocalInstall install;
  if (local) {
    install = [sent](const NamedTensors& w, int64_t version) {
      ++sent->local_installs;
      sent->local_version = version;
      EXPECT_EQ(w.size(), 3u);
      return absl::OkStatus();
    };
  }
  return ZmqTransport([] { return absl::StatusOr<NamedTensors>(Weights()); }, sends, /*bucket_bytes=*/2048,
                      [sent, send_status](const WeightBucket& h, Payload bytes) {
                        sent->buckets.emplace_back(h, std::move(bytes));
                        return send_status;
                      },
                      std::move(install));
}

// What rank 0 sends is what an engine's assembler puts back together, bit for bit.
TEST(ZmqTransportTest, RankZeroSendsBucketsTheAssemblerRebuilds) {
  Sent sent;
  ZmqTransport t = Make(&sent, /*sends=*/true, /*local=*/false);
  EXPECT_EQ(t.kind(), TransportKind::kZmq);
  absl::StatusOr<PublishStats> st = t.Publish(5);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->version, 5);
  ASSERT_GE(sent.buckets.size(), 2u) << "2 KiB buckets split the 16.8 KB policy";
  int64_t bytes = 0;
  WeightAssembler a;
  a.Begin(5);
  for (const auto& [h, p] : sent.buckets) {
    bytes += static_cast<int64_t>(p.size());
    ASSERT_TRUE(a.Add(h, p).ok());
  }
  EXPECT_EQ(st->bytes, bytes);
  ASSERT_TRUE(a.Complete());
  absl::StatusOr<NamedTensors> got = a.Take();
  ASSERT_TRUE(got.ok()) << got.status();
  for (const auto& [name, tensor] : Weights()) EXPECT_TRUE(at::equal(got->at(name), tensor)) << name;
  EXPECT_EQ(sent.local_installs, 0);
}

TEST(ZmqTransportTest, OtherRanksOnlyGatherAndInstallLocally) {
  Sent sent;
  ZmqTransport t = Make(&sent, /*sends=*/false, /*local=*/true);
  absl::StatusOr<PublishStats> st = t.Publish(9);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_TRUE(sent.buckets.empty());
  EXPECT_EQ(st->bytes, 0);
  EXPECT_EQ(sent.local_installs, 1);
  EXPECT_EQ(sent.local_version, 9);
}

TEST(ZmqTransportTest, ErrorsStopThePublish) {
  Sent sent;
  ZmqTransport failing_send = Make(&sent, true, true, absl::UnavailableError("relay gone"));
  EXPECT_EQ(failing_send.Publish(1).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(sent.buckets.size(), 1u) << "the first failed send ends the version";
  EXPECT_EQ(sent.local_installs, 0);

  int sends = 0;
  ZmqTransport failing_gather([] { return absl::StatusOr<NamedTensors>(absl::InternalError("collective")); }, true,
                              2048, [&](const WeightBucket&, Payload) {
                                ++sends;
                                return absl::OkStatus();
                              });
  EXPECT_EQ(failing_gather.Publish(2).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(sends, 0);
}

}  // namespace
}  // namespace tidal::weight_sync
