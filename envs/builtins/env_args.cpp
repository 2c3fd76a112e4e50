#include "envs/builtins/env_args.h"

#include <cmath>

#include "envs/builtins/builtin_env.h"

namespace tidal::envs::builtins {

using nlohmann::json;

EnvArgs::EnvArgs(const json& args, std::string env_name)
    : args_(args.is_null() ? json::object() : args), env_(std::move(env_name)) {
  if (!args_.is_object()) throw EnvError(env_ + ": args must be a mapping, got " + args_.dump());
}

void EnvArgs::Fail(const std::string& key, const std::string& what) const {
  throw EnvError(env_ + ": args." + key + ": " + what);
}

const json* EnvArgs::Find(const std::string& key) {
  seen_.insert(key);
  auto it = args_.find(key);
  if (it == args_.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t EnvArgs::Int(const std::string& key, int64_t def, int64_t min, int64_t max) {
  const json* v = Find(key);
  int64_t x = def;
  if (v != nullptr) {
    if (v->is_number_integer()) {
      x = v->get<int64_t>();
    } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()) {
      x = static_cast<int64_t>(v->get<double>());
    } else {
      Fail(key, "expected an integer, got " + v->dump());
    }
  }
  if (x < min || x > max) {
    Fail(key, "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                  std::to_string(x));
  }
  return x;
}

double EnvArgs::Double(const std::string& key, double def, double min, double max) {
  const json* v = Find(key);
  double x = def;
  if (v != nullptr) {
    if (!v->is_number()) Fail(key, "expected a number, got " + v->dump());
    x = v->get<double>();
  }
  if (!(x >= min && x <= max)) {
    Fail(key, "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                  std::to_string(x));
  }
  return x;
}

bool EnvArgs::Bool(const std::string& key, bool def) {
  const json* v = Find(key);
  if (v == nullptr) return def;
  if (!v->is_boolean()) Fail(key, "expected true or false, got " + v->dump());
  return v->get<bool>();
}

std::string EnvArgs::String(const std::string& key, const std::string& def) {
  const json* v = Find(key);
  if (v == nullptr) return def;
  if (!v->is_string()) Fail(key, "expected a string, got " + v->dump());
  return v->get<std::string>();
}

std::vector<std::string> EnvArgs::Strings(const std::string& key,
                                          const std::vector<std::string>& def) {
  const json* v = Find(key);
  if (v == nullptr) return def;
  if (!v->is_array()) Fail(key, "expected a list of strings, got " + v->dump());
  std::vector<std::string> out;
  for (const auto& e : *v) {
    if (!e.is_string()) Fail(key, "expected a list of strings, found element " + e.dump());
    out.push_back(e.get<std::string>());
  }
  return out;
}

void EnvArgs::Finish() const {
  for (const auto& [key, value] : args_.items()) {
    if (!seen_.count(key)) {
      std::string known;
      for (const auto& k : seen_) known += (known.empty() ? "" : ", ") + k;
      throw EnvError(env_ + ": args." + key + ": unknown key (known: " + known + ")");
    }
  }
}

}  // namespace tidal::envs::builtins
