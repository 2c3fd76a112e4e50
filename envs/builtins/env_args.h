// EnvArgs: typed reading of a built-in environment's `env.args` with defaults, range checks and
// rejection of unknown keys (a typo in a recipe must not silently fall back to a default).
// Every error is an EnvError naming the environment, the key, and what was expected.
//
// Usage: EnvArgs a(args, "letter_count"); int n = a.Int("min_len", 3, 1, 64); ... a.Finish();
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tidal::envs::builtins {

class EnvArgs {
 public:
  EnvArgs(const nlohmann::json& args, std::string env_name);

  int64_t Int(const std::string& key, int64_t def, int64_t min, int64_t max);
  double Double(const std::string& key, double def, double min, double max);
  bool Bool(const std::string& key, bool def);
  std::string String(const std::string& key, const std::string& def);
  std::vector<std::string> Strings(const std::string& key, const std::vector<std::string>& def);
  bool Has(const std::string& key) const { return args_.contains(key); }

  // Throws if args hold a key no accessor asked for.
  void Finish() const;
  // Throws an EnvError "<env>: args.<key>: <what>".
  [[noreturn]] void Fail(const std::string& key, const std::string& what) const;

 private:
  const nlohmann::json* Find(const std::string& key);

  nlohmann::json args_;
  std::string env_;
  std::set<std::string> seen_;
};

}  // namespace tidal::envs::builtins
