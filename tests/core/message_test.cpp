#include "core/message.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

// A protocol defined in another namespace, as the scheduler does.
namespace tidal::other_protocol {
struct AssignRole {
  std::string role;
  int64_t policy_version = 0;
};
TIDAL_MESSAGE(AssignRole, role, policy_version)
}  // namespace tidal::other_protocol

namespace tidal {
namespace {

TEST(MessageTest, TypesFromOtherNamespacesWork) {
  using other_protocol::AssignRole;
  static_assert(MessageType<AssignRole>);
  static_assert(!MessageType<std::string>);
  EXPECT_EQ(MessageName<AssignRole>(), "AssignRole");
  auto env = DecodeFrames(EncodeFrames(MessageHeader{}, MakeOut(AssignRole{"train", 4})));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->As<AssignRole>()->policy_version, 4);
}

struct Rollout {
  std::string prompt;
  int64_t policy_version = 0;
  std::vector<TensorSpec> tensors;
  double temperature = 1.0;
};
TIDAL_MESSAGE(Rollout, prompt, policy_version, tensors, temperature)

// An older peer's view of the same message: fewer fields.
struct RolloutV0 {
  std::string prompt;
};
TIDAL_MESSAGE(RolloutV0, prompt)

std::vector<Payload> Encode(const OutMessage& out, uint64_t id = 7) {
  MessageHeader h;
  h.id = id;
  h.sender = "test";
  return EncodeFrames(h, out);
}

TEST(MessageTest, RoundTripsTypedBodyAndRawFrames) {
  std::vector<float> logprobs(1000);
  std::iota(logprobs.begin(), logprobs.end(), -500.0f);
  Rollout msg{"count the r's", 42, {{"logprobs", "float32", {10, 100}, 0}}, 0.7};
  auto frames = Encode(MakeOut(msg, {Payload::Copy(logprobs.data(), logprobs.size() * 4)}));
  ASSERT_EQ(frames.size(), 3u);

  absl::StatusOr<Envelope> env = DecodeFrames(frames);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->type(), "Rollout");
  EXPECT_EQ(env->header.id, 7u);
  EXPECT_EQ(env->header.sender, "test");
  EXPECT_TRUE(env->Is<Rollout>());
  auto got = env->As<Rollout>();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->prompt, "count the r's");
  EXPECT_EQ(got->policy_version, 42);
  EXPECT_DOUBLE_EQ(got->temperature, 0.7);
  ASSERT_EQ(got->tensors.size(), 1u);
  EXPECT_EQ(got->tensors[0].shape, (std::vector<int64_t>{10, 100}));
  ASSERT_EQ(env->frames.size(), 1u);
  ASSERT_EQ(env->frames[0].size(), logprobs.size() * 4);
  EXPECT_EQ(std::memcmp(env->frames[0].data(), logprobs.data(), logprobs.size() * 4), 0);
}

TEST(MessageTest, RawFramesAreSharedNotCopied) {
  auto bytes = Payload::FromString(std::string(1 << 16, 'x'));
  auto frames = Encode(MakeOut(Ack{"ok"}, {bytes}));
  EXPECT_EQ(frames[2].data(), bytes.data());
  auto env = DecodeFrames(frames);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->frames[0].data(), bytes.data());
}

TEST(MessageTest, MissingFieldsKeepDefaultsAndWrongTypeIsAnError) {
  auto env = DecodeFrames(Encode(MakeOut(RolloutV0{"p"})));
  ASSERT_TRUE(env.ok());
  // Same body read as the newer struct (type names differ, so patch the header type).
  env->header.type = "Rollout";
  auto r = env->As<Rollout>();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prompt, "p");
  EXPECT_DOUBLE_EQ(r->temperature, 1.0);

  auto wrong = env->As<Ack>();
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("expected type Ack, got Rollout"), std::string::npos);

  env->body["policy_version"] = "not a number";
  auto bad = env->As<Rollout>();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("bad body"), std::string::npos) << bad.status();
}

TEST(MessageTest, GarbageIsRejectedWithAnError) {
  auto good = Encode(MakeOut(Ack{"x"}));
  auto expect_invalid = [](std::vector<Payload> frames, const std::string& needle) {
    auto env = DecodeFrames(std::move(frames));
    ASSERT_FALSE(env.ok());
    EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(env.status().message().find(needle), std::string::npos) << env.status();
  };
  expect_invalid({}, "0 frame(s)");
  expect_invalid({good[0]}, "1 frame(s)");
  expect_invalid({Payload::FromString("\xc1\xff garbage"), good[1]}, "message header");
  expect_invalid({Payload::FromString(""), good[1]}, "message header");
  expect_invalid({Payload::FromBytes({0x2a}), good[1]}, "not a MessagePack map");  // fixint 42
  expect_invalid({good[0], Payload::FromString("\xdb\xff\xff\xff\xff")}, "body");  // str32 overrun
  expect_invalid({good[0], good[1], Payload::FromString("extra")}, "announces 0 raw frame(s), got 1");

  MessageHeader h;
  h.version = kWireVersion + 1;
  h.type = "Ack";
  auto hv = nlohmann::json::to_msgpack(nlohmann::json(h));
  expect_invalid({Payload::FromBytes(hv), good[1]}, "wire version");
  h.version = kWireVersion;
  h.type = "";
  auto ht = nlohmann::json::to_msgpack(nlohmann::json(h));
  expect_invalid({Payload::FromBytes(ht), good[1]}, "no type");
  // A header whose fields have the wrong types.
  auto hw = nlohmann::json::to_msgpack(nlohmann::json{{"type", 5}, {"id", "x"}});
  expect_invalid({Payload::FromBytes(hw), good[1]}, "message header");
}

TEST(MessageTest, DeeplyNestedBodyIsRejectedWithoutExhaustingTheStack) {
  auto good = Encode(MakeOut(Ack{"x"}));
  // 1M nested one-element arrays: recursive parsing alone would overflow the stack.
  std::string bomb(1 << 20, '\x91');
  auto env = DecodeFrames({good[0], Payload::FromString(bomb)});
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("nested deeper"), std::string::npos) << env.status();
}

TEST(MessageTest, ErrorCarriesAStatus) {
  absl::Status s = absl::FailedPreconditionError("weights version 3 not loaded");
  EXPECT_EQ(StatusFromError(ErrorFromStatus(s)), s);
  EXPECT_EQ(StatusFromError(Error{999, "odd"}).code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(StatusFromError(Error{0, "ok?"}).code(), absl::StatusCode::kUnknown);
}

}  // namespace
}  // namespace tidal
