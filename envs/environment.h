// Environment: the C++ face of an environment plugin (tidal/env_plugin.h), for rollout workers,
// the controller and `tidal env check`.
//
// Open() resolves `spec.plugin`, either "builtin:NAME" (compiled into tidal_envs, same C ABI
// table) or a path to a shared library, checks the ABI and creates one plugin instance from
// `spec.args`. With `spec.isolate` the plugin is loaded in a separate env-worker process
// (tidal-env-worker) and every call goes over a pipe: a plugin that segfaults or aborts kills
// only that process, the call fails, and the next call starts a fresh worker.
//
// Errors: every failure (bad ABI, missing symbol, a plugin error, a C++ exception thrown across
// the ABI, invalid JSON or a missing key in the reply, time limit exceeded, a crashed worker,
// a reward that is not a number inside spec.reward_range)
// comes back as a Status whose message starts with "env plugin '<plugin>'": the caller records
// the affected trajectory as failed with that message and the run goes on. An in-process call
// that overruns its time limit leaves the plugin thread running; the instance is abandoned and
// every later call fails with kFailedPrecondition (use isolate for untrusted plugins).
//
// Threads: one Environment is used by one thread at a time (calls are not synchronised);
// distinct Environments may be used concurrently. Episode order: Reset, then Step until done;
// Score may be called at any time with any task of the same environment configuration.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace tidal::envs {

enum class Split { kTrain, kEval };
std::string_view SplitName(Split split);

struct EnvSpec {
  std::string plugin;                               // "builtin:letter_count" or a .so path
  nlohmann::json args = nlohmann::json::object();   // passed to the plugin's create()
  bool isolate = false;                             // run in a separate env-worker process
  double timeout_s = 10.0;                          // per call; <= 0 disables the limit
  // Rewards outside [low, high] fail the call (env.reward_range): a finite but huge reward such
  // as 1e308 would overflow the advantages and poison every weight.
  std::array<double, 2> reward_range = {-1e6, 1e6};
};

// "" when `reward` lies inside `range` (NaN never does), else why not, naming env.reward_range.
std::string RewardRangeProblem(double reward, const std::array<double, 2>& range);

struct Task {
  uint64_t seed = 0;
  Split split = Split::kTrain;
  std::string prompt;                       // text for raw (non-chat) models
  std::optional<nlohmann::json> messages;   // chat form, when the plugin gives one
  nlohmann::json hidden;                    // never shown to the model; input to Score
  std::optional<std::string> reference;     // a correct response (SFT warm-up target)
};

struct StepResult {
  std::string observation;              // appended to the context before the next turn
  std::string observation_role = "user";  // chat role for the observation
  double reward = 0.0;
  bool done = true;
  nlohmann::json info = nlohmann::json::object();
};

struct ScoreResult {
  double reward = 0.0;
  nlohmann::json info = nlohmann::json::object();
};

class EnvBackend;  // env_backend.h: in-process table or env-worker process

class Environment {
 public:
  static absl::StatusOr<std::unique_ptr<Environment>> Open(const EnvSpec& spec);
  ~Environment();

  absl::StatusOr<Task> Reset(uint64_t seed, Split split = Split::kTrain);
  absl::StatusOr<StepResult> Step(std::string_view model_turn);
  absl::StatusOr<ScoreResult> Score(const Task& task, std::string_view response);
  absl::StatusOr<ScoreResult> Score(const nlohmann::json& hidden, std::string_view response);

  const std::string& plugin() const { return spec_.plugin; }
  const EnvSpec& spec() const { return spec_; }

 private:
  Environment(EnvSpec spec, std::unique_ptr<EnvBackend> backend);
  absl::Status Malformed(const char* call, const char* why, const std::string& text) const;

  EnvSpec spec_;
  std::unique_ptr<EnvBackend> backend_;
};

// Parses the recipe's `env` section: {plugin, args, isolate, timeout_s, reward_range}.
absl::StatusOr<EnvSpec> EnvSpecFromJson(const nlohmann::json& env);

}  // namespace tidal::envs
