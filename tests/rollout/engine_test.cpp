// Engine-level checks against the one model definition (core/model.h) on a tiny random Qwen2.
// Tolerance: logprobs are fp32 and agree with Model::TokenLogprobs to 1e-4 absolute (observed
// ~1e-6; paged attention sums in a different order than the packed reference).
#include "rollout/engine.h"

#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <map>

namespace tidal::rollout {
namespace {

constexpr double kLogprobTol = 1e-4;

// Tiny ops: intra-op threads only spin against the other suites CTest runs at the same time.
const bool kSingleThreaded = [] {
  at::set_num_threads(1);
  return true;
}();

Model TinyModel(uint64_t seed) {
  Model m = Model::RandomInit(TinyQwen2Config(64, 2, 4, 2, 97), seed);
  // Sharper than the HF init so greedy argmaxes are not near-ties.
  for (auto& [name, t] : m.weights()) {
    if (t.dim() == 2) t.mul_(4.0);
  }
  return m;
}

std::vector<int32_t> Prompt(int len, int salt) {
  std::vector<int32_t> p(len);
  for (int i = 0; i < len; ++i) p[i] = (i * 7 + salt * 13 + 3) % 97;
  return p;
}

EngineConfig SmallConfig() {
  EngineConfig c;
  c.block_size = 4;
  c.num_blocks = 256;
  c.max_batch_tokens = 32;  // prompts over 32 tokens are chunked
  c.max_seqs = 8;
  c.eos_token_ids = std::vector<int32_t>{};
  return c;
}

std::unique_ptr<Engine> MakeEngine(const Model& m, EngineConfig c = SmallConfig()) {
  auto e = Engine::Create(m.config(), m.weights(), c);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(e).value();
}

Request Req(std::string id, std::vector<int32_t> prompt, int max_new, double temperature = 0.0,
            uint64_t seed = 1) {
  Request r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.params.max_new_tokens = max_new;
  r.params.temperature = temperature;
  r.seed = seed;
  return r;
}

std::vector<int32_t> ReferenceGreedy(const Model& m, const std::vector<int32_t>& prompt, int n) {
  c10::InferenceMode guard;
  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    at::Tensor t = at::tensor(ids, at::kLong);
    at::Tensor cu = at::tensor(std::vector<int64_t>{0, static_cast<int64_t>(ids.size())}, at::kLong);
    const int64_t next = m.Logits(t, cu)[-1].argmax().item<int64_t>();
    ids.push_back(next);
    out.push_back(static_cast<int32_t>(next));
  }
  return out;
}

// Model::TokenLogprobs of the generated tokens of `o` under temperature t (1 for greedy).
std::vector<float> ReferenceLogprobs(const Model& m, const RequestOutput& o, double t) {
  c10::InferenceMode guard;
  std::vector<int64_t> ids(o.prompt.begin(), o.prompt.end());
  ids.insert(ids.end(), o.tokens.begin(), o.tokens.end());
  std::vector<int64_t> targets(ids.begin() + 1, ids.end());
  targets.push_back(0);
  at::Tensor lp = m.TokenLogprobs(
      at::tensor(ids, at::kLong),
      at::tensor(std::vector<int64_t>{0, static_cast<int64_t>(ids.size())}, at::kLong),
      at::tensor(targets, at::kLong), t);
  std::vector<float> out;
  for (size_t i = 0; i < o.tokens.size(); ++i) {
    out.push_back(lp[o.prompt.size() - 1 + i].item<float>());
  }
  return out;
}

void ExpectLogprobsNear(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], kLogprobTol) << "token " << i;
}

TEST(Engine, GreedyEqualsFullRecomputeDecode) {
  Model m = TinyModel(1);
  auto e = MakeEngine(m);
  std::vector<Request> reqs;
  const std::vector<int> lens = {1, 3, 4, 5, 17, 40};  // 40 > max_batch_tokens: chunked
  for (size_t i = 0; i < lens.size(); ++i) {
    reqs.push_back(Req("r" + std::to_string(i), Prompt(lens[i], i), 12));
  }
  auto out = e->Generate(reqs);
  ASSERT_TRUE(out.ok()) << out.status();
  for (size_t i = 0; i < lens.size(); ++i) {
    const RequestOutput& o = (*out)[i];
    EXPECT_EQ(o.finish_reason, FinishReason::kLength);
    EXPECT_EQ(o.tokens, ReferenceGreedy(m, o.prompt, 12)) << "request " << i;
    ExpectLogprobsNear(o.logprobs, ReferenceLogprobs(m, o, 1.0));
    EXPECT_EQ(o.versions, std::vector<int64_t>(12, 0));
  }
}

TEST(Engine, SampledLogprobsEqualModelTokenLogprobsAtTheRequestTemperature) {
  Model m = TinyModel(2);
  auto e = MakeEngine(m);
  std::vector<Request> reqs;
  for (int i = 0; i < 4; ++i) {
    Request r = Req("s" + std::to_string(i), Prompt(6 + 3 * i, i), 10, 0.6 + 0.3 * i, 100 + i);
    if (i == 1) r.params.top_k = 5;
    if (i == 2) r.params.top_p = 0.8;
    if (i == 3) r.params.min_p = 0.05;
    reqs.push_back(r);
  }
  auto out = e->Generate(reqs);
  ASSERT_TRUE(out.ok()) << out.status();
  for (int i = 0; i < 4; ++i) {
    ExpectLogprobsNear((*out)[i].logprobs, ReferenceLogprobs(m, (*out)[i], 0.6 + 0.3 * i));
  }
}

// A GRPO-style batch: groups of identical prompts, greedy and sampled members.
std::vector<Request> GroupBatch() {
  std::vector<Request> reqs;
  for (int g = 0; g < 3; ++g) {
    for (int s = 0; s < 4; ++s) {
      reqs.push_back(Req("g" + std::to_string(g) + "s" + std::to_string(s), Prompt(11 + 6 * g, g),
                         14, s == 0 ? 0.0 : 1.0, 1000 * g + s));
    }
  }
  return reqs;
}

TEST(Engine, PrefixCacheHitsAndPreemptionDoNotChangeOutputs) {
  Model m = TinyModel(3);
  EngineConfig base = SmallConfig();
  base.enable_prefix_caching = false;
  auto plain = MakeEngine(m, base)->Generate(GroupBatch());
  ASSERT_TRUE(plain.ok()) << plain.status();

  auto cached_engine = MakeEngine(m);
  auto cached = cached_engine->Generate(GroupBatch());
  ASSERT_TRUE(cached.ok());
  EXPECT_GT(cached_engine->stats().prefix_hit_tokens, 0);

  EngineConfig tiny = SmallConfig();
  tiny.num_blocks = 14;  // a few sequences at a time: forces preemption by recompute
  auto tiny_engine = MakeEngine(m, tiny);
  auto preempted = tiny_engine->Generate(GroupBatch());
  ASSERT_TRUE(preempted.ok()) << preempted.status();
  EXPECT_GT(tiny_engine->stats().preemptions, 0);

  for (size_t i = 0; i < plain->size(); ++i) {
    EXPECT_EQ((*cached)[i].tokens, (*plain)[i].tokens) << (*plain)[i].id;
    EXPECT_EQ((*preempted)[i].tokens, (*plain)[i].tokens) << (*plain)[i].id;
    ExpectLogprobsNear((*cached)[i].logprobs, (*plain)[i].logprobs);
    ExpectLogprobsNear((*preempted)[i].logprobs, (*plain)[i].logprobs);
  }
  // Members after the first of each group reuse the prompt's full blocks.
  EXPECT_GT((*cached)[1].num_cached_tokens, 0);
}

TEST(Engine, SeededSampledRunIsReproducibleAndIndependentOfBatch) {
  Model m = TinyModel(4);
  Request target = Req("t", Prompt(9, 5), 16, 1.0, 777);
  auto alone = MakeEngine(m)->Generate({target});
  ASSERT_TRUE(alone.ok());
  auto again = MakeEngine(m)->Generate({target});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*alone)[0].tokens, (*again)[0].tokens);
  std::vector<Request> crowd;
  for (int i = 0; i < 6; ++i) crowd.push_back(Req("o" + std::to_string(i), Prompt(3 + 5 * i, 9 + i), 5 + i, 1.0, i));
  crowd.insert(crowd.begin() + 3, target);
  auto mixed = MakeEngine(m)->Generate(crowd);
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ((*mixed)[3].tokens, (*alone)[0].tokens);
  ExpectLogprobsNear((*mixed)[3].logprobs, (*alone)[0].logprobs);
  auto other_seed = target;
  other_seed.seed = 778;
  EXPECT_NE(MakeEngine(m)->Generate({other_seed}).value()[0].tokens, (*alone)[0].tokens);
}

TEST(Engine, PauseUpdateResumeSwitchesVersionsExactlyAtTheUpdate) {
  Model a = TinyModel(5), b = TinyModel(6);
  auto e = MakeEngine(a);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(e->AddRequest(Req("p" + std::to_string(i), Prompt(7 + i, i), 10)).ok());
  std::map<std::string, int> before;
  for (int s = 0; s < 4; ++s) {
    auto step = e->Step();
    ASSERT_TRUE(step.ok());
    for (const TokenEvent& t : step->tokens) {
      ++before[t.request_id];
      EXPECT_EQ(t.version, 0);
    }
  }
  EXPECT_TRUE(e->Pause(PauseMode::kKeep).empty());
  auto idle = e->Step();
  ASSERT_TRUE(idle.ok());
  EXPECT_TRUE(idle->tokens.empty());  // paused: no work
  ASSERT_TRUE(e->UpdateWeights(b.weights(), 1).ok());
  EXPECT_EQ(e->version(), 1);
  e->Resume();
  std::vector<RequestOutput> done;
  while (e->HasUnfinished()) {
    auto step = e->Step();
    ASSERT_TRUE(step.ok());
    for (auto& o : step->finished) done.push_back(o);
  }
  ASSERT_EQ(done.size(), 3u);
  for (const RequestOutput& o : done) {
    const int k = before[o.id];
    ASSERT_GT(k, 0);
    ASSERT_EQ(o.tokens.size(), 10u);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(o.versions[i], i < k ? 0 : 1) << o.id << " token " << i;
    // Tokens before the update are a's greedy continuation; after it, b's given that prefix.
    std::vector<float> la = ReferenceLogprobs(a, o, 1.0), lb = ReferenceLogprobs(b, o, 1.0);
    for (int i = 0; i < 10; ++i) EXPECT_NEAR(o.logprobs[i], i < k ? la[i] : lb[i], kLogprobTol);
    std::vector<int32_t> prefix = o.prompt;
    prefix.insert(prefix.end(), o.tokens.begin(), o.tokens.begin() + k);
    std::vector<int32_t> rest(o.tokens.begin() + k, o.tokens.end());
    EXPECT_EQ(rest, ReferenceGreedy(b, prefix, 10 - k));
  }
}

TEST(Engine, UpdateWeightsChecksEverythingBeforeWriting) {
  Model a = TinyModel(7), b = TinyModel(8);
  auto e = MakeEngine(a);
  const std::string good = "model.layers.0.mlp.up_proj.weight";
  NamedTensors update = {{good, b.weights().at(good)},
                         {"model.norm.weight", at::ones({3})}};
  absl::Status s = e->UpdateWeights(update, 5);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.norm.weight"), std::string::npos) << s;
  EXPECT_TRUE(e->weights().at(good).equal(a.weights().at(good)));  // untouched
  EXPECT_EQ(e->version(), 0);
  EXPECT_EQ(e->UpdateWeights({{"model.nope", at::ones({1})}}, 5).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e->UpdateWeights({{good, b.weights().at(good).to(at::kDouble)}}, 5).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(e->UpdateWeights({{good, b.weights().at(good)}}, 5).ok());
  EXPECT_TRUE(e->weights().at(good).equal(b.weights().at(good)));
  // The engine copied, it does not alias the caller's tensors.
  EXPECT_NE(e->weights().at(good).data_ptr(), b.weights().at(good).data_ptr());
}

// EngineConfig::dtype: the engine casts fp32 weights to bf16, serves them, and takes the
// trainer's fp32 updates by rounding them into its bf16 storage.
TEST(Engine, Bf16DtypeCastsWeightsAndAcceptsFp32Updates) {
  Model a = TinyModel(21), b = TinyModel(22);
  EngineConfig c = SmallConfig();
  c.dtype = at::kBFloat16;
  auto e = MakeEngine(a, c);
  EXPECT_EQ(e->config().dtype, at::kBFloat16);
  for (const auto& [name, t] : e->weights()) {
    ASSERT_EQ(t.scalar_type(), at::kBFloat16) << name;
    EXPECT_TRUE(t.equal(a.weights().at(name).to(at::kBFloat16))) << name;
  }
  const at::Tensor* storage = &e->weights().at("model.norm.weight");
  const void* ptr = storage->data_ptr();
  ASSERT_TRUE(e->UpdateWeights(b.weights(), 1).ok());  // fp32 in, rounded on copy
  for (const auto& [name, t] : e->weights()) {
    EXPECT_TRUE(t.equal(b.weights().at(name).to(at::kBFloat16))) << name;
  }
  EXPECT_EQ(e->weights().at("model.norm.weight").data_ptr(), ptr);  // same storage
  // Served in bf16: logprobs are those of the model on the same bf16 weights.
  NamedTensors bf;
  for (const auto& [name, t] : b.weights()) bf.emplace(name, t.to(at::kBFloat16));
  Model mb(b.config(), bf);
  auto out = e->Generate({Req("x", Prompt(9, 1), 6)});
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<float> ref = ReferenceLogprobs(mb, (*out)[0], 1.0);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR((*out)[0].logprobs[i], ref[i], 0.1) << i;  // bf16 rounding
  EXPECT_EQ((*out)[0].versions, std::vector<int64_t>(6, 1));
}

TEST(Engine, RejectsUnsupportedDtypeAndGpuFractionOnCpu) {
  Model a = TinyModel(23);
  EngineConfig c = SmallConfig();
  c.dtype = at::kDouble;
  EXPECT_EQ(Engine::Create(a.config(), a.weights(), c).status().code(), absl::StatusCode::kInvalidArgument);
  c = SmallConfig();
  c.gpu_memory_utilization = 0.5;  // needs a CUDA device
  EXPECT_EQ(Engine::Create(a.config(), a.weights(), c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Engine, StatsCountDecodeStepsAndAttendedTokens) {
  Model a = TinyModel(24);
  auto e = MakeEngine(a);
  auto out = e->Generate({Req("a", Prompt(5, 1), 4), Req("b", Prompt(7, 2), 4)});
  ASSERT_TRUE(out.ok());
  const EngineStats s = e->stats();
  EXPECT_EQ(s.decode_steps, 3);  // one prefill step yields each first token, then 3 decodes
  EXPECT_EQ(s.decode_tokens, 6);
  // Decode steps attend 6..8 and 8..10 keys: (6+8) + (7+9) + (8+10) = 48.
  EXPECT_EQ(s.decode_context_tokens, 48);
  EXPECT_EQ(s.context_tokens, 48 + 5 + 7);
  EXPECT_GT(s.step_seconds, 0);
  EXPECT_GE(s.step_seconds, s.decode_seconds);
  EXPECT_FALSE(e->uses_cuda_kernels());
}

TEST(Engine, FlatBucketUpdateEqualsNamedUpdate) {
  Model a = TinyModel(9), b = TinyModel(10);
  std::vector<ParamSpec> layout = ParamSpecs(b.config());
  std::vector<at::Tensor> parts;
  for (const ParamSpec& p : layout) parts.push_back(b.weights().at(p.name).reshape(-1));
  at::Tensor flat = at::cat(parts);
  auto e = MakeEngine(a);
  ASSERT_TRUE(e->UpdateWeightsFlat(flat, layout, 3).ok());
  for (const ParamSpec& p : layout) EXPECT_TRUE(e->weights().at(p.name).equal(b.weights().at(p.name))) << p.name;
  EXPECT_EQ(e->UpdateWeightsFlat(flat.narrow(0, 0, flat.numel() - 1), layout, 4).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->version(), 3);
}

TEST(Engine, AbortAndPauseAbortReturnPartialOutputs) {
  Model m = TinyModel(11);
  auto e = MakeEngine(m);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(e->AddRequest(Req("a" + std::to_string(i), Prompt(5, i), 50)).ok());
  for (int s = 0; s < 3; ++s) ASSERT_TRUE(e->Step().ok());
  auto one = e->Abort("a1");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->finish_reason, FinishReason::kAbort);
  EXPECT_EQ(one->tokens.size(), 3u);
  EXPECT_EQ(e->Abort("a1").status().code(), absl::StatusCode::kNotFound);
  auto rest = e->Pause(PauseMode::kAbort);
  ASSERT_EQ(rest.size(), 2u);
  for (const auto& o : rest) EXPECT_EQ(o.finish_reason, FinishReason::kAbort);
  EXPECT_FALSE(e->HasUnfinished());
  EXPECT_EQ(e->stats().free_blocks, e->stats().num_blocks);
}

TEST(Engine, StopsOnStopTokenStopStringAndLength) {
  Model m = TinyModel(12);
  Request r = Req("x", Prompt(6, 1), 8);
  auto free_run = MakeEngine(m)->Generate({r});
  ASSERT_TRUE(free_run.ok());
  const std::vector<int32_t> toks = (*free_run)[0].tokens;
  // Stop at the first occurrence of the third token.
  const int32_t stop_tok = toks[2];
  const size_t first = std::find(toks.begin(), toks.end(), stop_tok) - toks.begin();
  Request s = r;
  s.params.stop_token_ids = {stop_tok};
  auto stopped = MakeEngine(m)->Generate({s});
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ((*stopped)[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ((*stopped)[0].tokens, std::vector<int32_t>(toks.begin(), toks.begin() + first + 1));
  // The same through the engine's eos ids, and ignore_eos overriding them.
  EngineConfig c = SmallConfig();
  c.eos_token_ids = std::vector<int32_t>{stop_tok};
  EXPECT_EQ(MakeEngine(m, c)->Generate({r}).value()[0].tokens.size(), first + 1);
  Request ign = r;
  ign.params.ignore_eos = true;
  EXPECT_EQ(MakeEngine(m, c)->Generate({ign}).value()[0].tokens.size(), 8u);
  // Stop strings through a detokenizer mapping id -> 'A' + id % 26.
  c = SmallConfig();
  c.detokenize = [](std::span<const int32_t> ids) {
    std::string s;
    for (int32_t id : ids) s.push_back(static_cast<char>('A' + id % 26));
    return s;
  };
  Request str = r;
  str.params.stop_strings = {std::string(1, 'A' + toks[3] % 26) + std::string(1, 'A' + toks[4] % 26)};
  auto by_string = MakeEngine(m, c)->Generate({str});
  ASSERT_TRUE(by_string.ok());
  EXPECT_EQ((*by_string)[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ((*by_string)[0].stop_string, str.params.stop_strings[0]);
  EXPECT_LE((*by_string)[0].tokens.size(), 5u);
  EXPECT_EQ((*free_run)[0].finish_reason, FinishReason::kLength);
}

TEST(Engine, ReleaseAndReacquireMemoryKeepsRequestsAndResults) {
  Model m = TinyModel(13);
  std::vector<Request> reqs = {Req("m0", Prompt(9, 0), 12), Req("m1", Prompt(13, 1), 12)};
  auto expected = MakeEngine(m)->Generate(reqs);
  ASSERT_TRUE(expected.ok());
  auto e = MakeEngine(m);
  for (const Request& r : reqs) ASSERT_TRUE(e->AddRequest(r).ok());
  for (int s = 0; s < 4; ++s) ASSERT_TRUE(e->Step().ok());
  EXPECT_EQ(e->ReleaseMemory().code(), absl::StatusCode::kFailedPrecondition);  // not paused
  e->Pause(PauseMode::kKeep);
  ASSERT_TRUE(e->ReleaseMemory(/*weights=*/true).ok());
  ASSERT_TRUE(e->ReacquireMemory().ok());
  e->Resume();
  EXPECT_EQ(e->Step().status().code(), absl::StatusCode::kFailedPrecondition);  // weights stale
  ASSERT_TRUE(e->UpdateWeights(m.weights(), 0).ok());
  std::map<std::string, RequestOutput> got;
  while (e->HasUnfinished()) {
    auto step = e->Step();
    ASSERT_TRUE(step.ok()) << step.status();
    for (auto& o : step->finished) got[o.id] = o;
  }
  for (const RequestOutput& o : *expected) {
    EXPECT_EQ(got.at(o.id).tokens, o.tokens);
    ExpectLogprobsNear(got.at(o.id).logprobs, o.logprobs);
  }
}

TEST(Engine, RejectsBadRequests) {
  Model m = TinyModel(14);
  EngineConfig c = SmallConfig();
  c.max_model_len = 64;
  c.num_blocks = 8;
  auto e = MakeEngine(m, c);
  EXPECT_EQ(e->AddRequest(Req("", Prompt(3, 0), 4)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->AddRequest(Req("e", {}, 4)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->AddRequest(Req("v", {1, 97}, 4)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->AddRequest(Req("l", Prompt(64, 0), 4)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->AddRequest(Req("b", Prompt(20, 0), 20)).code(), absl::StatusCode::kInvalidArgument);  // 10 blocks > 8
  Request str = Req("s", Prompt(3, 0), 4);
  str.params.stop_strings = {"x"};
  EXPECT_EQ(e->AddRequest(str).code(), absl::StatusCode::kInvalidArgument);  // no detokenizer
  Request t = Req("t", Prompt(3, 0), 4);
  t.params.top_p = 0;
  EXPECT_EQ(e->AddRequest(t).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(e->AddRequest(Req("ok", Prompt(3, 0), 4)).ok());
  EXPECT_EQ(e->AddRequest(Req("ok", Prompt(3, 0), 4)).code(), absl::StatusCode::kAlreadyExists);
  NamedTensors missing = m.weights();
  missing.erase("model.norm.weight");
  EXPECT_EQ(Engine::Create(m.config(), missing, SmallConfig()).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tidal::rollout
