#include "scheduler/tag.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/message.h"
#include "scheduler/protocol.h"

namespace tidal::scheduler {
namespace {

TEST(TagTest, NamesRoundTrip) {
  for (Tag t : {Tag::kRollout, Tag::kTrain}) EXPECT_EQ(ParseTag(TagName(t)), t);
  EXPECT_STREQ(TagName(Tag::kTrain), "train");
  EXPECT_FALSE(ParseTag("Train").has_value());
  EXPECT_FALSE(ParseTag("").has_value());
}

// A tag travels typed: SetTag and WorkerSetup carry a Tag, encoded as its name, and a message
// with any other value is refused rather than read as a default tag.
TEST(TagTest, TravelsAsAnEnumOnTheWire) {
  OutMessage out = MakeOut(SetTag{Tag::kTrain});
  EXPECT_EQ(out.body["tag"], "train");
  Envelope env;
  env.peer = "controller";
  env.header.type = out.type;
  env.body = out.body;
  absl::StatusOr<SetTag> back = env.As<SetTag>();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tag, Tag::kTrain);

  env.body["tag"] = "training";
  EXPECT_EQ(env.As<SetTag>().status().code(), absl::StatusCode::kInvalidArgument);
  env.body["tag"] = 1;
  EXPECT_EQ(env.As<SetTag>().status().code(), absl::StatusCode::kInvalidArgument);

  WorkerSetup setup;
  setup.tag = Tag::kTrain;
  setup.weight_transport = weight_sync::TransportKind::kInProcess;
  nlohmann::json j = setup;
  EXPECT_EQ(j["tag"], "train");
  EXPECT_EQ(j["weight_transport"], "inprocess");
  WorkerSetup decoded = j.get<WorkerSetup>();
  EXPECT_EQ(decoded.tag, Tag::kTrain);
  EXPECT_EQ(decoded.weight_transport, weight_sync::TransportKind::kInProcess);
}

}  // namespace
}  // namespace tidal::scheduler
