// builtin:countdown: reach the target with the given numbers, "+ - * /" and parentheses, each
// number used at most once: "numbers 3 7 25 50 target 82:" -> " 25+50+7".
//
// args (all optional):
//   count                   how many numbers are given (default 4)
//   min_number, max_number  range of the numbers (default 1..25)
//   min_target, max_target  range of the target (default 10..100)
//   ops                     operators the generator uses (default "+-*/"; answers may use all)
//   use_all                 answers must use every number exactly once (default false)
//   format_reward           reward for a well-formed expression that obeys the number rules but
//                           misses the target (default 0.0)
//   prompt_template         default "numbers {numbers} target {target}:"
//   answer_template         default " {expr}" (the reference uses the generator's expression)
//   eval_fraction           share of (numbers, target) puzzles held out (default 0.1)
// Every task is solvable: the target is computed from a random expression over the numbers,
// with only positive integer intermediate results.
// Answer format: the expression is the text inside <answer>...</answer> when present, else the
// response's first line; anything from '=' on is ignored ("25+50+7 = 82" is fine). It is parsed
// by expression.h (exact rationals: 7/2 stays 7/2, never rounded).
#include <algorithm>

#include "envs/builtins/builtins.h"
#include "envs/builtins/env_args.h"
#include "envs/builtins/expression.h"
#include "envs/builtins/task_sampling.h"

namespace tidal::envs::builtins {
namespace {

using nlohmann::json;

std::string Replace(std::string text, const std::string& key, const std::string& value) {
  const std::string pattern = "{" + key + "}";
  for (size_t p = text.find(pattern); p != std::string::npos;
       p = text.find(pattern, p + value.size())) {
    text.replace(p, pattern.size(), value);
  }
  return text;
}

// The expression part of a response (see the header comment).
std::string ExpressionOf(std::string_view response) {
  std::string_view s = response;
  if (size_t a = s.find("<answer>"); a != std::string_view::npos) {
    s = s.substr(a + 8);
    s = s.substr(0, s.find("</answer>"));
  } else {
    s = s.substr(0, s.find('\n'));
  }
  s = s.substr(0, s.find('='));
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

class Countdown final : public BuiltinEnv {
 public:
  explicit Countdown(const json& args) {
    EnvArgs a(args, "countdown");
    count_ = a.Int("count", 4, 2, 8);
    min_number_ = a.Int("min_number", 1, 1, 1000000);
    max_number_ = a.Int("max_number", 25, 1, 1000000);
    min_target_ = a.Int("min_target", 10, 0, 1000000000);
    max_target_ = a.Int("max_target", 100, 0, 1000000000);
    ops_ = a.String("ops", "+-*/");
    use_all_ = a.Bool("use_all", false);
    format_reward_ = a.Double("format_reward", 0.0, 0.0, 1.0);
    prompt_template_ = a.String("prompt_template", "numbers {numbers} target {target}:");
    answer_template_ = a.String("answer_template", " {expr}");
    eval_fraction_ = a.Double("eval_fraction", 0.1, 0.0, 0.9);
    a.Finish();
    if (max_number_ < min_number_) a.Fail("max_number", "must be >= min_number");
    if (max_target_ < min_target_) a.Fail("max_target", "must be >= min_target");
    if (ops_.empty() || ops_.find_first_not_of("+-*/") != std::string::npos) {
      a.Fail("ops", "must be a non-empty string of '+', '-', '*', '/'");
    }
    if (prompt_template_.find("{numbers}") == std::string::npos ||
        prompt_template_.find("{target}") == std::string::npos) {
      a.Fail("prompt_template", "must contain {numbers} and {target}");
    }
  }

  json Reset(uint64_t seed, Split split) override {
    return SampleInSplit(seed, split, eval_fraction_, "countdown", [&](Rng& rng) {
      std::vector<int64_t> nums;
      for (int64_t i = 0; i < count_; ++i) nums.push_back(rng.Range(min_number_, max_number_));
      // Combine a random order of a random subset (all of them when use_all) left to right.
      std::vector<size_t> order(nums.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.Below(i)]);
      const size_t used = use_all_ ? order.size() : 2 + rng.Below(order.size() - 1);
      int64_t value = nums[order[0]];
      std::string expr = std::to_string(value);
      for (size_t k = 1; k < used; ++k) {
        int64_t b = nums[order[k]];
        const char op = ops_[rng.Below(ops_.size())];
        std::string bs = std::to_string(b);
        if (op == '+') {
          value += b;
        } else if (op == '*') {
          value *= b;
        } else if (op == '-') {
          if (value < b) return std::pair<std::string, json>("", {});  // keep it positive
          value -= b;
        } else {
          if (b == 0 || value % b != 0) return std::pair<std::string, json>("", {});
          value /= b;
        }
        if (value <= 0 || value > 1000000000) return std::pair<std::string, json>("", {});
        expr = (k + 1 < used ? "(" : "") + expr + op + bs + (k + 1 < used ? ")" : "");
      }
      if (value < min_target_ || value > max_target_) {
        return std::pair<std::string, json>("", {});
      }
      std::string numbers;
      for (auto n : nums) numbers += (numbers.empty() ? "" : " ") + std::to_string(n);
      std::vector<int64_t> sorted = nums;
      std::sort(sorted.begin(), sorted.end());
      std::string key;
      for (auto n : sorted) key += std::to_string(n) + ",";
      key += "=" + std::to_string(value);
      json task = {
          {"prompt", Replace(Replace(prompt_template_, "numbers", numbers), "target",
                             std::to_string(value))},
          {"hidden", {{"numbers", nums}, {"target", value}, {"solution", expr}}},
          {"reference", Replace(answer_template_, "expr", expr)}};
      return std::pair<std::string, json>(key, std::move(task));
    });
  }

  json Score(const json& hidden, std::string_view response) override {
    if (!hidden.is_object() || !hidden.contains("numbers") || !hidden["numbers"].is_array() ||
        !hidden.contains("target") || !hidden["target"].is_number_integer()) {
      throw EnvError("countdown: score: hidden value needs \"numbers\" and \"target\": " +
                     hidden.dump());
    }
    std::vector<int64_t> avail = hidden["numbers"].get<std::vector<int64_t>>();
    const int64_t target = hidden["target"].get<int64_t>();
    const std::string expr = ExpressionOf(response);
    auto result = [&](double reward, const std::string& why) {
      return json{{"reward", reward}, {"info", {{"expression", expr}, {"verdict", why}}}};
    };
    auto v = EvaluateExpression(expr);
    if (!v.ok()) return result(0.0, std::string(v.status().message()));
    for (const Rational& lit : v->literals) {
      if (!lit.is_integer()) return result(0.0, "uses a non-integer number " + lit.ToString());
      auto it = std::find(avail.begin(), avail.end(), lit.num);
      if (it == avail.end()) {
        return result(0.0, "uses " + std::to_string(lit.num) +
                               " more often than given (or it is not given)");
      }
      avail.erase(it);
    }
    if (use_all_ && !avail.empty()) return result(format_reward_, "does not use every number");
    if (!(v->value == Rational{target, 1})) {
      return result(format_reward_, "evaluates to " + v->value.ToString() + ", not " +
                                        std::to_string(target));
    }
    return result(1.0, "correct");
  }

 private:
  int64_t count_, min_number_, max_number_, min_target_, max_target_;
  std::string ops_;
  bool use_all_;
  double format_reward_;
  std::string prompt_template_, answer_template_;
  double eval_fraction_;
};

}  // namespace

TIDAL_BUILTIN_ENV(CountdownApi, Countdown, "countdown",
                  "reach a target from given numbers with + - * /; verified by a real parser")

}  // namespace tidal::envs::builtins
