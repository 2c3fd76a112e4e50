// `tidal generate MODEL_DIR [PROMPT...]`: samples completions from an HF model directory (an
// exported final/ or checkpoint hf/, or any supported HF checkpoint) on the embedded rollout
// engine (rollout/engine.h), on CPU or a GPU, and writes one JSON line per completion.
//
// Prompts: the positional arguments; else --file FILE ('-' = stdin); else stdin when it is not
// a terminal. A file line is either a JSON object {"prompt": "..."} (raw text) or
// {"messages": [{"role", "content"}, ...]} (chat, rendered with the model's chat format,
// core/chat_template.h), or any other line, taken as raw prompt text. --chat wraps raw prompts
// as one user message (after an optional --system message).
//
// Output (stdout, or --out FILE), one object per completion, in prompt order then sample order:
//   {"index": i, "sample": j, "prompt": "...", "text": "...", "finish_reason": "stop"|"length",
//    "prompt_tokens": n, "completion_tokens": m, "tokens": [...], "logprobs": [...]}
// (tokens / logprobs with --tokens / --logprobs). Logs go to stderr.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/chat_template.h"
#include "core/hf_checkpoint.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "rollout/engine.h"
#include "tools/cli/command.h"

namespace {

using Json = nlohmann::json;

struct Args {
  std::string dir;
  std::vector<std::string> prompts;
  std::string file, out, tokenizer, system, device = "cpu", dtype = "auto";
  bool chat = false, tokens = false, logprobs = false, ignore_eos = false;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0;
  int32_t top_k = 0;
  int64_t max_new_tokens = 128, n = 1, max_seqs = 64;
  uint64_t seed = 1;
  std::vector<std::string> stop;
};

struct Prompt {
  std::string text;  // what the model sees (chat prompts rendered)
};

absl::StatusOr<std::string> RenderChat(const Json& messages, const std::string& where) {
  if (!messages.is_array() || messages.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"messages\" must be a non-empty array"));
  }
  std::vector<tidal::ChatMessage> chat;
  for (const Json& m : messages) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": each message needs string \"role\" and \"content\""));
    }
    chat.push_back({.role = m["role"].get<std::string>(), .content = m["content"].get<std::string>()});
  }
  auto text = tidal::RenderQwenChat(chat);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", text.status().message()));
  return *text;
}

absl::StatusOr<std::string> FromRaw(const Args& a, const std::string& raw, const std::string& where) {
  if (!a.chat) return raw;
  Json messages = Json::array();
  if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
  messages.push_back({{"role", "user"}, {"content", raw}});
  return RenderChat(messages, where);
}

absl::StatusOr<std::vector<Prompt>> ReadPrompts(const Args& a) {
  std::vector<Prompt> out;
  for (size_t i = 0; i < a.prompts.size(); ++i) {
    TIDAL_ASSIGN_OR_RETURN(std::string text, FromRaw(a, a.prompts[i], absl::StrCat("prompt ", i + 1)));
    out.push_back({text});
  }
  if (!out.empty()) return out;
  std::string file = a.file;
  if (file.empty()) {
    if (::isatty(STDIN_FILENO)) {
      return absl::InvalidArgumentError("no prompts: give them as arguments, with --file FILE, or on stdin");
    }
    file = "-";
  }
  std::ifstream f;
  if (file != "-") {
    f.open(file);
    if (!f) return absl::NotFoundError(absl::StrCat("--file ", file, ": cannot open"));
  }
  std::istream& in = file == "-" ? std::cin : f;
  const std::string name = file == "-" ? "<stdin>" : file;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.empty()) continue;
    const std::string where = absl::StrCat(name, ":", lineno);
    if (line.front() != '{') {
      TIDAL_ASSIGN_OR_RETURN(std::string text, FromRaw(a, line, where));
      out.push_back({text});
      continue;
    }
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": a line starting with '{' must be a JSON object"));
    }
    if (j.contains("messages")) {
      TIDAL_ASSIGN_OR_RETURN(std::string text, RenderChat(j["messages"], where));
      out.push_back({text});
    } else if (j.contains("prompt") && j["prompt"].is_string()) {
      TIDAL_ASSIGN_OR_RETURN(std::string text, FromRaw(a, j["prompt"].get<std::string>(), where));
      out.push_back({text});
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected a string \"prompt\" or a \"messages\" array"));
    }
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": no prompts"));
  return out;
}

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& s, const tidal::ModelConfig& c) {
  if (s == "auto") return c.torch_dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  if (s == "fp32" || s == "float32") return at::kFloat;
  if (s == "bf16" || s == "bfloat16") return at::kBFloat16;
  return absl::InvalidArgumentError(absl::StrCat("--dtype \"", s, "\" is not auto, fp32 or bf16"));
}

absl::Status Run(const Args& a) {
  std::string tok_spec = a.tokenizer;
  if (tok_spec.empty()) {
    if (!tidal::HasHfTokenizer(a.dir)) {
      return absl::InvalidArgumentError(absl::StrCat(
          a.dir, " has no tokenizer.json; pass --tokenizer byte (tiny tidal models) or a directory "
                 "holding the model's tokenizer.json"));
    }
    tok_spec = a.dir;
  }
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<tidal::Tokenizer> tok, tidal::LoadTokenizer(tok_spec));
  TIDAL_ASSIGN_OR_RETURN(std::vector<Prompt> prompts, ReadPrompts(a));
  TIDAL_ASSIGN_OR_RETURN(tidal::ModelConfig config, tidal::ModelConfig::FromHfDir(a.dir));
  TIDAL_ASSIGN_OR_RETURN(at::ScalarType dtype, ParseDtype(a.dtype, config));
  TIDAL_ASSIGN_OR_RETURN(tidal::Model model, tidal::Model::LoadHf(a.dir, dtype));
  if (a.n < 1) return absl::InvalidArgumentError(absl::StrCat("--n must be >= 1, got ", a.n));

  tidal::rollout::EngineConfig ec;
  ec.device = a.device;
  ec.max_seqs = a.max_seqs;
  const tidal::SpecialTokenIds& sp = tok->Specials();
  if (!sp.stop.empty()) {
    ec.eos_token_ids = sp.stop;
  } else if (sp.eos) {
    ec.eos_token_ids = std::vector<int32_t>{*sp.eos};
  }
  const tidal::Tokenizer* t = tok.get();
  ec.detokenize = [t](std::span<const int32_t> ids) { return t->Decode(ids); };
  TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<tidal::rollout::Engine> engine,
                         tidal::rollout::Engine::Create(model.config(), model.weights(), ec));

  tidal::rollout::SamplingParams params;
  params.temperature = a.temperature;
  params.top_p = a.top_p;
  params.top_k = a.top_k;
  params.min_p = a.min_p;
  params.max_new_tokens = a.max_new_tokens;
  params.stop_strings = a.stop;
  params.ignore_eos = a.ignore_eos;
  TIDAL_RETURN_IF_ERROR(params.Validate());

  std::vector<tidal::rollout::Request> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<int32_t> ids = tok->Encode(prompts[i].text);
    if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat("prompt ", i + 1, " is empty"));
    for (int64_t j = 0; j < a.n; ++j) {
      requests.push_back({.id = absl::StrCat(i, "/", j),
                          .prompt = ids,
                          .params = params,
                          .seed = a.seed + static_cast<uint64_t>(i * a.n + j)});
    }
  }
  TIDAL_ASSIGN_OR_RETURN(std::vector<tidal::rollout::RequestOutput> outs,
                         engine->Generate(std::move(requests)));

  std::ofstream file;
  if (!a.out.empty()) {
    file.open(a.out, std::ios::trunc);
    if (!file) return absl::InternalError(absl::StrCat("--out ", a.out, ": cannot open"));
  }
  std::ostream& os = a.out.empty() ? std::cout : file;
  for (size_t k = 0; k < outs.size(); ++k) {
    const auto& o = outs[k];
    const size_t i = k / a.n;
    Json line = {{"index", i},
                 {"sample", k % a.n},
                 {"prompt", prompts[i].text},
                 {"text", tok->Decode(o.tokens, /*skip_special_tokens=*/true)},
                 {"finish_reason", std::string(tidal::rollout::FinishReasonName(o.finish_reason))},
                 {"prompt_tokens", o.prompt.size()},
                 {"completion_tokens", o.tokens.size()}};
    if (!o.stop_string.empty()) line["stop"] = o.stop_string;
    if (a.tokens) line["tokens"] = o.tokens;
    if (a.logprobs) line["logprobs"] = o.logprobs;
    os << line.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
  }
  os.flush();
  if (!os) return absl::InternalError("writing the output failed");
  return absl::OkStatus();
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto a = std::make_shared<Args>();
  sub.add_option("model_dir", a->dir, "HF model directory (e.g. runs/NAME/final)")->required();
  sub.add_option("prompts", a->prompts, "Prompts (raw text; see --chat)");
  sub.add_option("--file", a->file, "Read prompts from FILE ('-' = stdin): one per line, raw text or "
                                    "JSON {\"prompt\": ...} / {\"messages\": [...]}");
  sub.add_flag("--chat", a->chat, "Render raw prompts as a user message in the chat format");
  sub.add_option("--system", a->system, "System message for --chat prompts");
  sub.add_option("--tokenizer", a->tokenizer, "Tokenizer: 'byte' or a dir (default: MODEL_DIR's tokenizer.json)");
  sub.add_option("--temperature", a->temperature, "Sampling temperature; 0 = greedy (default 1)");
  sub.add_option("--top-p", a->top_p, "Nucleus sampling mass (default 1 = off)");
  sub.add_option("--top-k", a->top_k, "Keep the k most likely tokens (default 0 = off)");
  sub.add_option("--min-p", a->min_p, "Drop tokens below min_p * p_max (default 0 = off)");
  sub.add_option("--max-new-tokens", a->max_new_tokens, "Tokens per completion at most (default 128)");
  sub.add_option("-n,--n", a->n, "Completions per prompt (default 1)");
  sub.add_option("--seed", a->seed, "Seed; completion k of the run uses seed + k (default 1)");
  sub.add_option("--stop", a->stop, "Stop string (repeatable); the match is kept in the text");
  sub.add_flag("--ignore-eos", a->ignore_eos, "Do not stop at the tokenizer's end tokens");
  sub.add_option("--device", a->device, "cpu (default), cuda or cuda:N");
  sub.add_option("--dtype", a->dtype, "Weights dtype: auto (config.json's), fp32 or bf16");
  sub.add_option("--max-seqs", a->max_seqs, "Sequences the engine runs at once (default 64)");
  sub.add_flag("--tokens", a->tokens, "Add the generated token ids to each line");
  sub.add_flag("--logprobs", a->logprobs, "Add each generated token's logprob to each line");
  sub.add_option("--out", a->out, "Write the JSONL here instead of stdout");
  return [a] { return Run(*a); };
}

TIDAL_CLI_COMMAND("generate", "Sample completions from an HF model directory (JSONL out)", Setup);

}  // namespace
