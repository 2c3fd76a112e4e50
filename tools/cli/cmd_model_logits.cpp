// `tidal model logits DIR --ids 1,2,3 [--seq-lens 2,1] [--dtype bf16] [--device cuda] [--json]
// [--logprobs] [--out file.safetensors]`: runs the model on given token ids (one sequence, or
// several packed ones split by --seq-lens) and prints or saves logits (fp32), or log-softmax
// values plus each token's next-token logprob (NaN / null at each sequence's last token). The parity tool (tools/parity/) drives tidal
// through this command.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/model.h"
#include "core/safetensors.h"
#include "tools/cli/command.h"

namespace {

struct Args {
  std::string dir, ids, seq_lens, dtype = "fp32", device = "cpu", out;
  bool json = false, logprobs = false;
  int top = 5;
};

absl::StatusOr<std::vector<int64_t>> ParseInts(const std::string& text, const char* flag) {
  std::vector<int64_t> out;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(piece, &v)) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": \"", piece, "\" is not an integer"));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " is empty"));
  return out;
}

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return at::kFloat;
  if (s == "bf16" || s == "bfloat16") return at::kBFloat16;
  if (s == "fp16" || s == "float16") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("--dtype \"", s, "\" is not fp32, bf16 or fp16"));
}

nlohmann::json Rows(const at::Tensor& m) {
  at::Tensor c = m.to(at::kCPU, at::kFloat).contiguous();
  const float* p = c.data_ptr<float>();
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t r = 0; r < c.size(0); ++r) rows.push_back(std::vector<float>(p + r * c.size(1), p + (r + 1) * c.size(1)));
  return rows;
}

absl::Status Run(const Args& a) {
  TIDAL_ASSIGN_OR_RETURN(std::vector<int64_t> ids, ParseInts(a.ids, "--ids"));
  std::vector<int64_t> lens = {static_cast<int64_t>(ids.size())};
  if (!a.seq_lens.empty()) {
    TIDAL_ASSIGN_OR_RETURN(lens, ParseInts(a.seq_lens, "--seq-lens"));
  }
  std::vector<int64_t> cu = {0};
  for (int64_t l : lens) {
    if (l <= 0) return absl::InvalidArgumentError(absl::StrCat("--seq-lens entries must be positive, found ", l));
    cu.push_back(cu.back() + l);
  }
  if (cu.back() != static_cast<int64_t>(ids.size())) {
    return absl::InvalidArgumentError(absl::StrCat("--seq-lens sum to ", cu.back(), " but --ids has ",
                                                   ids.size(), " tokens"));
  }
  TIDAL_ASSIGN_OR_RETURN(at::ScalarType dtype, ParseDtype(a.dtype));
  TIDAL_ASSIGN_OR_RETURN(tidal::Model model, tidal::Model::LoadHf(a.dir, dtype));
  for (int64_t id : ids) {
    if (id < 0 || id >= model.config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("--ids: token ", id, " is outside the vocabulary [0, ",
                                                     model.config().vocab_size, ")"));
    }
  }
  at::Device device(a.device);  // throws on a malformed name; main reports it
  for (auto& [name, t] : model.weights()) t = t.to(device);

  c10::NoGradGuard no_grad;
  at::Tensor ids_t = at::tensor(ids, at::kLong).to(device);
  at::Tensor cu_t = at::tensor(cu, at::kLong).to(device);
  at::Tensor logits = model.Logits(ids_t, cu_t);
  at::Tensor values = a.logprobs ? at::log_softmax(logits, -1) : logits;
  const char* key = a.logprobs ? "logprobs" : "logits";
  // Next-token logprob inside each sequence; NaN at each sequence's last token (no target).
  at::Tensor token_lp;
  if (a.logprobs) {
    at::Tensor targets = ids_t.roll(-1);
    at::Tensor last = at::zeros({ids_t.size(0)}, at::kBool);
    for (size_t i = 1; i < cu.size(); ++i) last[cu[i] - 1] = true;
    last = last.to(device);
    targets = targets.masked_fill(last, 0);
    token_lp = model.TokenLogprobs(ids_t, cu_t, targets).masked_fill(last, NAN);
  }

  if (!a.out.empty()) {
    // The file always carries the raw logits; --logprobs adds the log-softmax rows and the
    // next-token logprobs (one run gives the parity tool everything it compares).
    tidal::NamedTensors out = {{"logits", logits.cpu()}, {"ids", ids_t.cpu()}, {"cu_seqlens", cu_t.cpu()}};
    if (token_lp.defined()) {
      out["logprobs"] = values.cpu();
      out["token_logprobs"] = token_lp.cpu();
    }
    TIDAL_RETURN_IF_ERROR(tidal::SaveSafetensors(
        a.out, out, {{"dtype", a.dtype}, {"model_type", model.config().model_type}}));
  }
  if (a.json) {
    nlohmann::json j = {{"model_type", model.config().model_type}, {"dtype", a.dtype},
                        {"ids", ids}, {"cu_seqlens", cu}, {key, Rows(values)}};
    if (token_lp.defined()) {
      nlohmann::json lp = nlohmann::json::array();
      at::Tensor c = token_lp.cpu();
      for (int64_t i = 0; i < c.size(0); ++i) {
        float v = c[i].item<float>();
        lp.push_back(std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v));
      }
      j["token_logprobs"] = lp;
    }
    std::cout << j.dump() << "\n";
  } else if (a.out.empty()) {
    const int64_t k = std::min<int64_t>(a.top, values.size(1));
    auto [top_v, top_i] = values.cpu().topk(k, -1);
    for (int64_t t = 0; t < values.size(0); ++t) {
      std::cout << "pos " << t << " id " << ids[t] << ":";
      for (int64_t j = 0; j < k; ++j) {
        std::cout << " " << top_i[t][j].item<int64_t>() << "="
                  << absl::StrFormat("%.4f", top_v[t][j].item<float>());
      }
      if (token_lp.defined() && !std::isnan(token_lp[t].item<float>())) {
        std::cout << "  next " << ids[t + 1] << " logprob "
                  << absl::StrFormat("%.4f", token_lp[t].item<float>());
      }
      std::cout << "\n";
    }
  }
  return absl::OkStatus();
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto args = std::make_shared<Args>();
  sub.add_option("dir", args->dir, "HF checkpoint directory")->required();
  sub.add_option("--ids", args->ids, "Comma-separated token ids")->required();
  sub.add_option("--seq-lens", args->seq_lens, "Split --ids into packed sequences of these lengths");
  sub.add_option("--dtype", args->dtype, "Weights dtype: fp32 (default), bf16, fp16");
  sub.add_option("--device", args->device, "cpu (default) or cuda[:N]");
  sub.add_flag("--json", args->json, "Print everything as one JSON object");
  sub.add_flag("--logprobs", args->logprobs,
               "Log-softmax instead of logits, plus each token's next-token logprob");
  sub.add_option("--out", args->out, "Also write the result tensors to this .safetensors file");
  sub.add_option("--top", args->top, "Text output: top-k entries per position (default 5)");
  return [args] { return Run(*args); };
}

TIDAL_CLI_COMMAND("model logits", "Logits or logprobs of an HF checkpoint for given token ids", Setup);

}  // namespace
