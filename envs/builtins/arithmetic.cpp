// builtin:arithmetic: multi-digit integer arithmetic, "123+456=" -> " 579".
//
// args (all optional):
//   min_digits, max_digits   operand length in digits (default 1..3)
//   ops                      operators to draw from, any of "+-*" (default "+-")
//   operands                 how many operands (default 2)
//   allow_negative           whether '-' may give a negative result (default true); when false,
//                            operands of a subtraction are ordered so the result is >= 0
//   prompt_template          default "{expr}="   ({expr} is e.g. "123+456")
//   answer_template          default " {answer}"  (the task's reference)
//   eval_fraction            share of expressions held out for the eval split (default 0.1)
// Reward: 1.0 when the first integer in the response equals the exact value, else 0.0.
#include "envs/builtins/answer_parse.h"
#include "envs/builtins/builtins.h"
#include "envs/builtins/env_args.h"
#include "envs/builtins/task_sampling.h"

namespace tidal::envs::builtins {
namespace {

using nlohmann::json;

std::string Replace(std::string text, const std::string& key, const std::string& value) {
  const std::string pattern = "{" + key + "}";
  for (size_t p = text.find(pattern); p != std::string::npos; p = text.find(pattern, p + value.size())) {
    text.replace(p, pattern.size(), value);
  }
  return text;
}

class Arithmetic final : public BuiltinEnv {
 public:
  explicit Arithmetic(const json& args) {
    EnvArgs a(args, "arithmetic");
    min_digits_ = a.Int("min_digits", 1, 1, 9);
    max_digits_ = a.Int("max_digits", 3, 1, 9);
    if (max_digits_ < min_digits_) a.Fail("max_digits", "must be >= min_digits");
    ops_ = a.String("ops", "+-");
    operands_ = a.Int("operands", 2, 2, 6);
    allow_negative_ = a.Bool("allow_negative", true);
    prompt_template_ = a.String("prompt_template", "{expr}=");
    answer_template_ = a.String("answer_template", " {answer}");
    eval_fraction_ = a.Double("eval_fraction", 0.1, 0.0, 0.9);
    a.Finish();
    if (ops_.empty() || ops_.find_first_not_of("+-*") != std::string::npos) {
      a.Fail("ops", "must be a non-empty string of '+', '-', '*'");
    }
    if (prompt_template_.find("{expr}") == std::string::npos) {
      a.Fail("prompt_template", "must contain {expr}");
    }
    if (answer_template_.find("{answer}") == std::string::npos) {
      a.Fail("answer_template", "must contain {answer}");
    }
  }

  json Reset(uint64_t seed, Split split) override {
    return SampleInSplit(seed, split, eval_fraction_, "arithmetic", [&](Rng& rng) {
      std::vector<int64_t> nums;
      std::string op_seq;
      for (int64_t i = 0; i < operands_; ++i) {
        const int64_t digits = rng.Range(min_digits_, max_digits_);
        int64_t lo = 1;
        for (int64_t d = 1; d < digits; ++d) lo *= 10;
        const int64_t hi = lo * 10 - 1;
        nums.push_back(digits == 1 ? rng.Range(0, 9) : rng.Range(lo, hi));
        if (i > 0) op_seq += ops_[rng.Below(ops_.size())];
      }
      if (!allow_negative_ && operands_ == 2 && op_seq[0] == '-' && nums[0] < nums[1]) {
        std::swap(nums[0], nums[1]);
      }
      std::string expr = std::to_string(nums[0]);
      for (size_t i = 1; i < nums.size(); ++i) expr += op_seq[i - 1] + std::to_string(nums[i]);
      auto value = EvaluateExpression(expr);  // usual precedence: * before + and -
      if (!value.ok()) throw EnvError("arithmetic: internal: " + std::string(value.status().message()));
      const int64_t answer = value->value.num;
      json task = {{"prompt", Replace(prompt_template_, "expr", expr)},
                   {"hidden", {{"expr", expr}, {"answer", answer}}},
                   {"reference", Replace(answer_template_, "answer", std::to_string(answer))}};
      // With allow_negative false and more than two operands, redraw negative results.
      const std::string key = (!allow_negative_ && answer < 0) ? std::string() : expr;
      return std::pair<std::string, json>(key, std::move(task));
    });
  }

  json Score(const json& hidden, std::string_view response) override {
    if (!hidden.is_object() || !hidden.contains("answer") || !hidden["answer"].is_number_integer()) {
      throw EnvError("arithmetic: score: hidden value lacks an integer \"answer\": " + hidden.dump());
    }
    const int64_t expected = hidden["answer"].get<int64_t>();
    const auto parsed = FirstInteger(response);
    return {{"reward", parsed && *parsed == expected ? 1.0 : 0.0},
            {"info", {{"expected", expected}, {"parsed", parsed ? json(*parsed) : json(nullptr)}}}};
  }

 private:
  int64_t min_digits_, max_digits_, operands_;
  std::string ops_;
  bool allow_negative_;
  std::string prompt_template_, answer_template_;
  double eval_fraction_;
};

}  // namespace

TIDAL_BUILTIN_ENV(ArithmeticApi, Arithmetic, "arithmetic",
                  "multi-digit integer arithmetic; exact-answer reward")

}  // namespace tidal::envs::builtins
