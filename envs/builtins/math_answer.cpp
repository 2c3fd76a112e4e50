// builtin:math_answer: GSM8K-style word problems from a JSONL file, judged on the final answer.
//
// args:
//   path              JSONL file, one object per line (required); e.g. envs/data/gsm8k_sample.jsonl
//   question_key      default "question"
//   answer_key        default "answer"; the expected final answer is extracted from it by the
//                     same rules as responses (GSM8K's "#### 42" first; see answer_parse.h)
//   eval_path         a separate JSONL file for the eval split; without it, eval_fraction of the
//                     questions (by hash of the question text) are held out of training
//   eval_fraction     default 0.1 (ignored with eval_path)
//   prompt_template   default "Question: {question}\nAnswer:"
//   reference_template default " {solution}" ({solution} = the dataset's answer text)
// Reward: 1.0 when the final answer extracted from the response equals the expected one after
// normalisation ("1,000" = "1000", "3.50" = "3.5" = "7/2", "$30" = "30"), else 0.0.
#include <fstream>

#include "envs/builtins/answer_parse.h"
#include "envs/builtins/builtins.h"
#include "envs/builtins/env_args.h"
#include "envs/builtins/task_sampling.h"

namespace tidal::envs::builtins {
namespace {

using nlohmann::json;

struct Problem {
  std::string question;
  std::string solution;  // the dataset's answer text
  std::string answer;    // the final answer extracted from it
};

class MathAnswer final : public BuiltinEnv {
 public:
  explicit MathAnswer(const json& args) {
    EnvArgs a(args, "math_answer");
    const std::string path = a.String("path", "");
    question_key_ = a.String("question_key", "question");
    answer_key_ = a.String("answer_key", "answer");
    const std::string eval_path = a.String("eval_path", "");
    const double eval_fraction = a.Double("eval_fraction", 0.1, 0.0, 0.9);
    prompt_template_ = a.String("prompt_template", "Question: {question}\nAnswer:");
    reference_template_ = a.String("reference_template", " {solution}");
    a.Finish();
    if (path.empty()) a.Fail("path", "required: a JSONL file with one problem per line");
    std::vector<Problem> all = Load(a, "path", path);
    if (!eval_path.empty()) {
      train_ = std::move(all);
      eval_ = Load(a, "eval_path", eval_path);
    } else {
      for (auto& p : all) {
        (InEvalSplit(p.question, eval_fraction) ? eval_ : train_).push_back(std::move(p));
      }
    }
    if (train_.empty()) a.Fail("path", "no training problems left in '" + path + "'");
  }

  json Reset(uint64_t seed, Split split) override {
    const auto& pool = split == Split::kEval ? eval_ : train_;
    if (pool.empty()) {
      throw EnvError("math_answer: the eval split is empty (give eval_path or raise "
                     "eval_fraction)");
    }
    Rng rng(seed);
    const Problem& p = pool[rng.Below(pool.size())];
    return {{"prompt", Fill(prompt_template_, "question", p.question)},
            {"messages", json::array({{{"role", "user"}, {"content", p.question}}})},
            {"hidden", {{"answer", p.answer}}},
            {"reference", Fill(reference_template_, "solution", p.solution)}};
  }

  json Score(const json& hidden, std::string_view response) override {
    if (!hidden.is_object() || !hidden.contains("answer") || !hidden["answer"].is_string()) {
      throw EnvError("math_answer: score: hidden value lacks a string \"answer\": " +
                     hidden.dump());
    }
    const std::string expected = hidden["answer"];
    const auto got = ExtractFinalAnswer(response);
    const bool ok = got && AnswersMatch(expected, *got);
    return {{"reward", ok ? 1.0 : 0.0},
            {"info", {{"expected", expected}, {"extracted", got ? json(*got) : json(nullptr)}}}};
  }

 private:
  static std::string Fill(std::string text, const std::string& key, const std::string& value) {
    const std::string pattern = "{" + key + "}";
    for (size_t p = text.find(pattern); p != std::string::npos;
         p = text.find(pattern, p + value.size())) {
      text.replace(p, pattern.size(), value);
    }
    return text;
  }

  std::vector<Problem> Load(const EnvArgs& a, const std::string& key, const std::string& path) {
    std::ifstream in(path);
    if (!in) a.Fail(key, "cannot open '" + path + "'");
    std::vector<Problem> out;
    std::string line;
    for (int lineno = 1; std::getline(in, line); ++lineno) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = path + ":" + std::to_string(lineno);
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) a.Fail(key, where + ": not a JSON object");
      auto q = j.find(question_key_);
      auto s = j.find(answer_key_);
      if (q == j.end() || !q->is_string()) {
        a.Fail(key, where + ": no string \"" + question_key_ + "\"");
      }
      if (s == j.end() || !(s->is_string() || s->is_number())) {
        a.Fail(key, where + ": no \"" + answer_key_ + "\"");
      }
      Problem p;
      p.question = q->get<std::string>();
      p.solution = s->is_string() ? s->get<std::string>() : s->dump();
      auto final_answer = ExtractFinalAnswer(p.solution);
      if (!final_answer) a.Fail(key, where + ": no final answer found in \"" + answer_key_ + "\"");
      p.answer = *final_answer;
      out.push_back(std::move(p));
    }
    if (out.empty()) a.Fail(key, "'" + path + "' has no problems");
    return out;
  }

  std::string question_key_, answer_key_, prompt_template_, reference_template_;
  std::vector<Problem> train_, eval_;
};

}  // namespace

TIDAL_BUILTIN_ENV(MathAnswerApi, MathAnswer, "math_answer",
                  "GSM8K-style JSONL problems; final-answer extraction and number normalisation")

}  // namespace tidal::envs::builtins
