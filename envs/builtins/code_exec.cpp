// builtin:code_exec: the model writes a Python program; hidden tests, run in the sandbox
// service (`tidal sandbox serve`), decide the reward.
//
// args:
//   path            JSONL problems: {"prompt": "...", "tests": "assert ...", "reference": "..."}
//                   ("reference" optional), e.g. envs/data/code_exec_sample.jsonl (required)
//   sandbox_url     default "http://127.0.0.1:8731"
//   timeout_s       per run (default 5), memory_mb (default 256)
//   prompt_template default "{prompt}\n```python\n"
//   eval_fraction   share of problems (by hash of the prompt) held out (default 0.1)
// Reward: 1.0 when the program followed by the tests exits 0 within the limits, else 0.0. The
// program is the first ```python fenced block of the response (or, for a response that
// continues the prompt's open fence, the text up to the closing ```; or the whole response).
// A sandbox that cannot be reached is an error (the trajectory fails), not a 0 reward.
#include <fstream>

#include "envs/builtins/builtins.h"
#include "envs/builtins/env_args.h"
#include "envs/builtins/task_sampling.h"
#include "envs/sandbox_client.h"

namespace tidal::envs::builtins {
namespace {

using nlohmann::json;

std::string ProgramOf(std::string_view response) {
  const size_t fence = response.find("```python");
  if (fence != std::string_view::npos) {
    size_t start = response.find('\n', fence);
    if (start == std::string_view::npos) return "";
    ++start;
    const size_t end = response.find("```", start);
    return std::string(response.substr(start, end == std::string_view::npos ? end : end - start));
  }
  // Continuation of an open fence in the prompt: up to the first closing fence.
  return std::string(response.substr(0, response.find("```")));
}

struct Problem {
  std::string prompt, tests, reference;
};

class CodeExec final : public BuiltinEnv {
 public:
  explicit CodeExec(const json& args) {
    EnvArgs a(args, "code_exec");
    const std::string path = a.String("path", "");
    url_ = a.String("sandbox_url", "http://127.0.0.1:8731");
    timeout_s_ = a.Double("timeout_s", 5.0, 0.1, 600.0);
    memory_mb_ = a.Int("memory_mb", 256, 16, 65536);
    prompt_template_ = a.String("prompt_template", "{prompt}\n```python\n");
    const double eval_fraction = a.Double("eval_fraction", 0.1, 0.0, 0.9);
    a.Finish();
    if (path.empty()) a.Fail("path", "required: a JSONL file of {prompt, tests} problems");
    std::ifstream in(path);
    if (!in) a.Fail("path", "cannot open '" + path + "'");
    std::string line;
    for (int lineno = 1; std::getline(in, line); ++lineno) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      const std::string where = path + ":" + std::to_string(lineno);
      if (j.is_discarded() || !j.is_object() || !j.contains("prompt") ||
          !j["prompt"].is_string() || !j.contains("tests") || !j["tests"].is_string()) {
        a.Fail("path", where + ": expected {\"prompt\": string, \"tests\": string}");
      }
      Problem p{j["prompt"], j["tests"], j.value("reference", "")};
      (InEvalSplit(p.prompt, eval_fraction) ? eval_ : train_).push_back(std::move(p));
    }
    if (train_.empty()) a.Fail("path", "no training problems in '" + path + "'");
  }

  json Reset(uint64_t seed, Split split) override {
    const auto& pool = split == Split::kEval ? eval_ : train_;
    if (pool.empty()) throw EnvError("code_exec: the " + std::string(SplitName(split)) +
                                     " split is empty");
    Rng rng(seed);
    const Problem& p = pool[rng.Below(pool.size())];
    std::string prompt = prompt_template_;
    if (size_t at = prompt.find("{prompt}"); at != std::string::npos) {
      prompt.replace(at, 8, p.prompt);
    }
    json task = {{"prompt", prompt},
                 {"messages", json::array({{{"role", "user"}, {"content", p.prompt}}})},
                 {"hidden", {{"tests", p.tests}}}};
    if (!p.reference.empty()) task["reference"] = p.reference + "```\n";
    return task;
  }

  json Score(const json& hidden, std::string_view response) override {
    if (!hidden.is_object() || !hidden.contains("tests") || !hidden["tests"].is_string()) {
      throw EnvError("code_exec: score: hidden value lacks a string \"tests\": " + hidden.dump());
    }
    const std::string program = ProgramOf(response);
    SandboxRequest req{"python3", program + "\n\n" + hidden["tests"].get<std::string>(), "",
                       timeout_s_, memory_mb_};
    auto r = SandboxClient(url_).Run(req);
    if (!r.ok()) throw EnvError("code_exec: " + std::string(r.status().message()));
    const bool passed = r->exit_code == 0 && !r->timed_out;
    std::string err_tail = r->stderr_text.size() > 500
                               ? r->stderr_text.substr(r->stderr_text.size() - 500)
                               : r->stderr_text;
    return {{"reward", passed ? 1.0 : 0.0},
            {"info",
             {{"exit_code", r->exit_code},
              {"timed_out", r->timed_out},
              {"time_s", r->time_s},
              {"error", r->error},
              {"stderr_tail", err_tail}}}};
  }

 private:
  std::string url_, prompt_template_;
  double timeout_s_;
  int64_t memory_mb_;
  std::vector<Problem> train_, eval_;
};

}  // namespace

TIDAL_BUILTIN_ENV(CodeExecApi, CodeExec, "code_exec",
                  "write a Python program; hidden tests run in the sandbox service decide")

}  // namespace tidal::envs::builtins
