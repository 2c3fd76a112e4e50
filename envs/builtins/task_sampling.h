// Deterministic task sampling shared by the built-ins: a portable RNG (the same task for the
// same seed on every platform, unlike std:: distributions) and the train/eval partition.
//
// Held-out split: a task belongs to eval iff hash(task key) falls in the lowest
// `eval_fraction` of the hash space. The key identifies the task's content (e.g. word+letter),
// so an eval task can never be drawn for training under any seed. Reset draws candidates from
// the seed's RNG stream until one lands in the requested split.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/hash.h"  // header-only SplitMix64: envs/ links none of tidal_core
#include "envs/builtins/builtin_env.h"
#include "envs/environment.h"

namespace tidal::envs::builtins {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed ^ 0x9e3779b97f4a7c15ULL) {}
  // The SplitMix64 generator: mix the state, then advance it by the golden-ratio increment that
  // SplitMix64() adds before mixing (so the output stream is that of the reference generator).
  uint64_t Next() {
    const uint64_t z = SplitMix64(state_);
    state_ += 0x9e3779b97f4a7c15ULL;
    return z;
  }
  // Uniform in [0, n); n > 0. The modulo bias is below 2^-40 for the n used here.
  uint64_t Below(uint64_t n) { return Next() % n; }
  // Uniform integer in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(Below(hi - lo + 1)); }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

inline uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

inline bool InEvalSplit(std::string_view task_key, double eval_fraction) {
  // Mix again so that keys differing only in their last byte spread over the whole range.
  uint64_t h = Fnv1a64(task_key);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return static_cast<double>(h >> 11) * 0x1.0p-53 < eval_fraction;
}

// Draws tasks with `draw(rng)` (returning {key, task}) until one is in `split`. An empty key
// rejects the draw (e.g. a task outside the configured constraints).
template <typename Draw>
auto SampleInSplit(uint64_t seed, Split split, double eval_fraction, const char* env_name,
                   Draw&& draw) {
  Rng rng(seed);
  constexpr int kMaxAttempts = 100000;
  for (int i = 0; i < kMaxAttempts; ++i) {
    auto [key, task] = draw(rng);
    if (key.empty()) continue;
    if (InEvalSplit(key, eval_fraction) == (split == Split::kEval)) return task;
  }
  throw EnvError(std::string(env_name) + ": no " + std::string(SplitName(split)) +
                 " task found in " + std::to_string(kMaxAttempts) +
                 " draws; widen the task space or change eval_fraction");
}

}  // namespace tidal::envs::builtins
