// builtin:tool_calc: multi-turn tool use. The model must compute an expression too large to do
// in its head, calling a calculator through a function-call format over several turns:
//
//   model:  <tool_call>{"name":"calc","arguments":{"expr":"4821*377"}}</tool_call>
//   env:    <tool_result>1817517</tool_result>            (observation, role "tool", not done)
//   model:  <tool_call>{"name":"calc","arguments":{"expr":"1817517-1290"}}</tool_call>
//   env:    <tool_result>1816227</tool_result>
//   model:  <answer>1816227</answer>                      (done: reward 1.0 if exact)
//
// A turn with a tool call gets the tool's result (or "error: ..." for a malformed call, an
// unknown tool or a bad expression) and the episode goes on; a turn without a tool call ends
// it and is judged by its <answer>...</answer> (or, without tags, its last number). After
// max_turns turns the episode ends with reward 0.
//
// args (all optional):
//   min_digits, max_digits   operand size (default 2..4)
//   operands                 operands per expression (default 3)
//   ops                      operators drawn (default "+-*")
//   max_turns                default 4
//   tool_call_cost           subtracted from a correct answer's reward per tool call (default 0)
//   eval_fraction            share of expressions held out (default 0.1)
// score(hidden, response) judges the last <answer> in a whole transcript, so it can re-score a
// finished multi-turn episode. hidden.demo_turns is a correct two-turn episode (SFT demo).
#include "envs/builtins/answer_parse.h"
#include "envs/builtins/builtins.h"
#include "envs/builtins/env_args.h"
#include "envs/builtins/expression.h"
#include "envs/builtins/task_sampling.h"

namespace tidal::envs::builtins {
namespace {

using nlohmann::json;

constexpr char kSystem[] =
    "You can use a calculator. To call it, write exactly "
    "<tool_call>{\"name\":\"calc\",\"arguments\":{\"expr\":\"EXPRESSION\"}}</tool_call> and "
    "stop; the result comes back as <tool_result>...</tool_result>. Expressions use numbers, "
    "+ - * / and parentheses. When you know the answer, write <answer>NUMBER</answer>.";

// Text between the last `open` and the following `close`.
std::optional<std::string> LastTagged(std::string_view text, std::string_view open,
                                      std::string_view close) {
  const size_t a = text.rfind(open);
  if (a == std::string_view::npos) return std::nullopt;
  const size_t b = text.find(close, a + open.size());
  if (b == std::string_view::npos) return std::nullopt;
  return std::string(text.substr(a + open.size(), b - a - open.size()));
}

class ToolCalc final : public BuiltinEnv {
 public:
  explicit ToolCalc(const json& args) {
    EnvArgs a(args, "tool_calc");
    min_digits_ = a.Int("min_digits", 2, 1, 9);
    max_digits_ = a.Int("max_digits", 4, 1, 9);
    if (max_digits_ < min_digits_) a.Fail("max_digits", "must be >= min_digits");
    operands_ = a.Int("operands", 3, 2, 6);
    ops_ = a.String("ops", "+-*");
    max_turns_ = a.Int("max_turns", 4, 1, 64);
    tool_call_cost_ = a.Double("tool_call_cost", 0.0, 0.0, 1.0);
    eval_fraction_ = a.Double("eval_fraction", 0.1, 0.0, 0.9);
    a.Finish();
    if (ops_.empty() || ops_.find_first_not_of("+-*/") != std::string::npos) {
      a.Fail("ops", "must be a non-empty string of '+', '-', '*', '/'");
    }
  }

  json Reset(uint64_t seed, Split split) override {
    turns_ = 0;
    tool_calls_ = 0;
    return SampleInSplit(seed, split, eval_fraction_, "tool_calc", [&](Rng& rng) {
      std::string expr;
      for (int64_t i = 0; i < operands_; ++i) {
        const int64_t digits = rng.Range(min_digits_, max_digits_);
        int64_t lo = 1;
        for (int64_t d = 1; d < digits; ++d) lo *= 10;
        if (i > 0) expr += ops_[rng.Below(ops_.size())];
        expr += std::to_string(digits == 1 ? rng.Range(1, 9) : rng.Range(lo, lo * 10 - 1));
      }
      auto v = EvaluateExpression(expr);
      if (!v.ok()) return std::pair<std::string, json>("", {});  // e.g. overflow: redraw
      const std::string answer = v->value.ToDecimal();
      const std::string question = "What is " + expr + "?";
      const std::string call = "<tool_call>" +
                               json{{"name", "calc"}, {"arguments", {{"expr", expr}}}}.dump() +
                               "</tool_call>";
      json task = {{"prompt", std::string(kSystem) + "\nQuestion: " + question + "\n"},
                   {"messages", json::array({{{"role", "system"}, {"content", kSystem}},
                                             {{"role", "user"}, {"content", question}}})},
                   {"hidden",
                    {{"expr", expr},
                     {"answer", answer},
                     {"demo_turns", {call, "<answer>" + answer + "</answer>"}}}}};
      return std::pair<std::string, json>(expr, std::move(task));
    });
  }

  json Step(std::string_view turn) override {
    if (!episode_running()) throw EnvError("tool_calc: step() with no episode running");
    ++turns_;
    json info = {{"turn", turns_}};
    if (auto call = LastTagged(turn, "<tool_call>", "</tool_call>")) {
      ++tool_calls_;
      const std::string result = RunTool(*call);
      info["tool_result"] = result;
      if (turns_ >= max_turns_) {
        info["verdict"] = "out of turns";
        return {{"observation", ""}, {"reward", 0.0}, {"done", true}, {"info", info}};
      }
      return {{"observation", "<tool_result>" + result + "</tool_result>"},
              {"observation_role", "tool"},
              {"reward", 0.0},
              {"done", false},
              {"info", info}};
    }
    json scored = Score(current_hidden(), turn);
    double reward = scored["reward"].get<double>();
    if (reward > 0) reward = std::max(0.0, reward - tool_call_cost_ * tool_calls_);
    info.update(scored["info"]);
    info["tool_calls"] = tool_calls_;
    return {{"observation", ""}, {"reward", reward}, {"done", true}, {"info", info}};
  }

  json Score(const json& hidden, std::string_view response) override {
    if (!hidden.is_object() || !hidden.contains("answer") || !hidden["answer"].is_string()) {
      throw EnvError("tool_calc: score: hidden value lacks a string \"answer\": " +
                     hidden.dump());
    }
    const std::string expected = hidden["answer"];
    std::optional<std::string> got = LastTagged(response, "<answer>", "</answer>");
    if (!got) got = ExtractFinalAnswer(response);
    const bool ok = got && AnswersMatch(expected, *got);
    return {{"reward", ok ? 1.0 : 0.0},
            {"info", {{"expected", expected}, {"answer", got ? json(*got) : json(nullptr)}}}};
  }

 private:
  static std::string RunTool(const std::string& call_json) {
    json call = json::parse(call_json, nullptr, /*allow_exceptions=*/false);
    if (call.is_discarded() || !call.is_object()) return "error: tool call is not a JSON object";
    if (call.value("name", "") != "calc") {
      return "error: unknown tool '" + call.value("name", "") + "' (available: calc)";
    }
    auto args = call.find("arguments");
    if (args == call.end() || !args->is_object() || !args->contains("expr") ||
        !(*args)["expr"].is_string()) {
      return "error: calc needs arguments {\"expr\": \"...\"}";
    }
    auto v = EvaluateExpression((*args)["expr"].get<std::string>());
    if (!v.ok()) return "error: " + std::string(v.status().message());
    return v->value.ToDecimal();
  }

  int64_t min_digits_, max_digits_, operands_, max_turns_;
  std::string ops_;
  double tool_call_cost_, eval_fraction_;
  int64_t turns_ = 0, tool_calls_ = 0;
};

}  // namespace

TIDAL_BUILTIN_ENV(ToolCalcApi, ToolCalc, "tool_calc",
                  "multi-turn: answer arithmetic by calling a calculator tool")

}  // namespace tidal::envs::builtins
