// Test helper: opens a built-in environment or fails the test with the status.
#pragma once

#include <gtest/gtest.h>

#include "envs/environment.h"

namespace tidal::envs::testing {

inline std::unique_ptr<Environment> OpenBuiltin(const std::string& name,
                                                nlohmann::json args = nlohmann::json::object()) {
  EnvSpec spec;
  spec.plugin = "builtin:" + name;
  spec.args = std::move(args);
  auto env = Environment::Open(spec);
  EXPECT_TRUE(env.ok()) << env.status();
  return env.ok() ? std::move(*env) : nullptr;
}

inline double Reward(Environment& env, const nlohmann::json& hidden, const std::string& resp) {
  auto s = env.Score(hidden, resp);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? s->reward : -1.0;
}

}  // namespace tidal::envs::testing
