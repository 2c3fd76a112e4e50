#include "core/messaging_tensor.h"

#include <gtest/gtest.h>

#include "core/messaging.h"

namespace tidal {
namespace {

struct Batch {
  std::string id;
  std::vector<TensorSpec> tensors;
};
TIDAL_MESSAGE(Batch, id, tensors)

TEST(MessagingTensorTest, TensorsCrossASocketBitExact) {
  RouterOptions ro;
  auto router = Router::Bind(ro);
  ASSERT_TRUE(router.ok());
  DealerOptions dopt;
  dopt.endpoint = (*router)->endpoint();
  dopt.name = "train-1";
  auto dealer = Dealer::Connect(dopt);
  ASSERT_TRUE(dealer.ok());

  at::manual_seed(0);
  at::Tensor logprobs = at::randn({64, 128}).to(at::kBFloat16);
  at::Tensor tokens = at::randint(0, 151936, {64, 128}, at::kLong);
  at::Tensor mask = at::rand({3, 5}) > 0.5;
  at::Tensor strided = at::arange(24, at::kFloat).reshape({4, 6}).t();  // non-contiguous
  std::vector<Payload> frames;
  Batch b{"b0",
          {AddTensorFrame(frames, "logprobs", logprobs), AddTensorFrame(frames, "tokens", tokens),
           AddTensorFrame(frames, "mask", mask), AddTensorFrame(frames, "strided", strided)}};
  EXPECT_EQ(b.tensors[1].dtype, "int64");
  EXPECT_EQ(b.tensors[3].shape, (std::vector<int64_t>{6, 4}));
  // A contiguous tensor is not copied into its frame.
  EXPECT_EQ(frames[1].data(), static_cast<const void*>(tokens.data_ptr()));
  ASSERT_TRUE((*dealer)->Send(b, std::move(frames)).ok());

  absl::StatusOr<Envelope> env;
  for (;;) {
    auto in = (*router)->Receive(absl::Seconds(5));
    ASSERT_TRUE(in.ok()) << in.status();
    if (auto* e = std::get_if<Envelope>(&*in)) {
      env = std::move(*e);
      break;
    }
  }
  auto got = env->As<Batch>();
  ASSERT_TRUE(got.ok());
  std::vector<at::Tensor> expect = {logprobs, tokens, mask, strided};
  for (size_t i = 0; i < expect.size(); ++i) {
    auto t = TensorFromFrame(*env, got->tensors[i]);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->scalar_type(), expect[i].scalar_type()) << got->tensors[i].name;
    EXPECT_TRUE(at::equal(*t, expect[i])) << got->tensors[i].name;
  }
}

TEST(MessagingTensorTest, InconsistentSpecsAreErrors) {
  std::vector<Payload> frames;
  TensorSpec spec = AddTensorFrame(frames, "x", at::ones({2, 3}));
  Envelope env;
  env.header.type = "Batch";
  env.peer = "rollout-0";
  env.frames = frames;
  ASSERT_TRUE(TensorFromFrame(env, spec).ok());

  auto expect_error = [&](TensorSpec s, const std::string& needle) {
    auto t = TensorFromFrame(env, s);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find(needle), std::string::npos) << t.status();
    EXPECT_NE(t.status().message().find("tensor 'x' in Batch from 'rollout-0'"), std::string::npos);
  };
  TensorSpec s = spec;
  s.frame = 3;
  expect_error(s, "frame 3 does not exist");
  s = spec;
  s.dtype = "complex32";
  expect_error(s, "dtype 'complex32'");
  s = spec;
  s.shape = {2, 4};
  expect_error(s, "needs 32 bytes, frame has 24");
  s = spec;
  s.shape = {-1, 6};
  expect_error(s, "bad shape");
  s = spec;
  s.shape = {INT64_MAX, INT64_MAX};
  expect_error(s, "bad shape");
}

}  // namespace
}  // namespace tidal
