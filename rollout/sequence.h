// One request's state inside the engine: tokens, KV bookkeeping, sampled outputs, timings.
//
// Contract: owned by the Engine (one std::unique_ptr per live request); the Scheduler and the
// BlockManager hold raw pointers and mutate only the fields documented as theirs below. All
// access is on the engine's thread. Torch-free.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "rollout/sampling_params.h"

namespace tidal::rollout {

using Clock = MonoClock;

enum class FinishReason {
  kNone,    // still generating
  kStop,    // an eos / stop token id or a stop string
  kLength,  // max_new_tokens or the engine's max_model_len
  kAbort,   // Abort(id) or Pause(kAbort)
};
std::string_view FinishReasonName(FinishReason r);  // "none" | "stop" | "length" | "abort"

struct Sequence {
  enum class State { kWaiting, kRunning, kFinished };

  // --- set when the request is added; immutable afterwards ---
  std::string id;
  int64_t num_prompt_tokens = 0;
  SamplingParams params;
  uint64_t seed = 0;
  Clock::time_point arrival;

  // --- prompt followed by every generated token (Engine appends) ---
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;    // one per generated token
  std::vector<int64_t> versions;  // policy version that produced each generated token

  // --- Scheduler ---
  State state = State::kWaiting;
  int64_t last_scheduled_step = -1;
  int64_t num_preemptions = 0;

  // --- BlockManager (KV bookkeeping); Scheduler advances num_computed_tokens after a step ---
  int64_t num_computed_tokens = 0;     // leading tokens whose K/V are in the cache
  std::vector<int32_t> block_table;    // block ids holding tokens [0, num_computed + scheduled)
  std::vector<uint64_t> block_hashes;  // chain hash of each full block of block_table
  int64_t num_cached_tokens = 0;       // prefix-cache hits over all admissions (stats)

  // --- Engine ---
  FinishReason finish_reason = FinishReason::kNone;
  std::string stop_string;  // the stop string that ended it, if any
  Clock::time_point first_scheduled, first_token, finished;
  bool scheduled_once = false;

  int64_t NumTokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t NumOutputTokens() const { return NumTokens() - num_prompt_tokens; }
  std::span<const int32_t> OutputTokens() const {
    return std::span<const int32_t>(tokens).subspan(num_prompt_tokens);
  }
};

}  // namespace tidal::rollout
