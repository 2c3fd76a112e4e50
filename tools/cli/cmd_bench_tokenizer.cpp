// `tidal bench tokenizer [--tokenizer DIR] [--mb N] [--file PATH] [--repeat R]`: encode
// throughput of tidal's tokenizer against HF `tokenizers` (the Python package, run as a
// subprocess with tools/bench/hf_tokenizer_encode.py) on the same documents, in the same run.
//
// Protocol, identical on both sides: the corpus is cut into ~4 KB documents at line
// boundaries; each repeat loads a fresh tokenizer (cold merge cache) and times only the loop
// that encodes every document, one call per document, one thread; the best repeat counts.
// MB = 10^6 bytes of UTF-8 input. Both wall-clock and process-CPU seconds are measured; the
// speedup uses CPU seconds, because on a shared machine wall time mostly measures the other
// tenants (the baseline runs with RAYON_NUM_THREADS=1, so CPU time is its one thread's work).
// The checksums of all ids are compared, so a speedup is only
// reported together with "ids_match".
//
// The default corpus is synthetic and deterministic (seeded): English-like prose with a Zipf
// word distribution and a long tail of rare words, source code, and Chinese text, so the
// per-word cache sees realistic hit rates. --file benchmarks real text instead.
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/clock.h"
#include "core/tokenizer.h"
#include "tools/cli/baseline_command.h"
#include "tools/cli/command.h"

namespace {

using Json = nlohmann::json;
using tidal::cli::CommandOutput;
using tidal::cli::RunCommand;

struct Args {
  std::string tokenizer = "tests/fixtures/qwen3-tokenizer";
  double mb = 4.0;
  std::string file;
  int repeat = 3;
  std::string python;
  std::string script = "tools/bench/hf_tokenizer_encode.py";
  bool no_baseline = false;
};

constexpr const char* kCommonWords[] = {
    "the",      "of",     "and",      "to",      "a",       "in",       "is",      "that",
    "for",      "it",     "as",       "was",     "with",    "be",       "by",      "on",
    "not",      "he",     "this",     "are",     "or",      "his",      "from",    "at",
    "which",    "but",    "have",     "an",      "had",     "they",     "you",     "were",
    "their",    "one",    "all",      "we",      "can",     "her",      "has",     "there",
    "been",     "if",     "more",     "when",    "will",    "would",    "who",     "so",
    "no",       "model",  "training", "reward",  "policy",  "gradient", "token",   "sequence",
    "learning", "value",  "function", "data",    "system",  "time",     "between", "through",
    "example",  "result", "number",   "problem", "because", "however",  "each"};
constexpr const char* kSyllables[] = {"ka",  "lo",  "mi",   "ter",  "ran", "pro", "sen", "dis",
                                      "con", "ex",  "ment", "tion", "al",  "ing", "ed",  "ver",
                                      "ic",  "ous", "ble",  "ure",  "qua", "zy",  "bri", "sta",
                                      "th",  "ph",  "or",   "an",   "ly",  "ist"};
constexpr const char* kHanzi =
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可"
    "里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已"
    "老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问"
    "力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却"
    "代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期"
    "强化训练模型推理架构分离奖励策略梯度";

// Deterministic synthetic corpus of at least `bytes` bytes.
std::string SyntheticCorpus(size_t bytes) {
  std::mt19937_64 rng(20261122);
  const auto uniform = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  // Zipf-like rank: P(rank >= r) ~ 1/r over 1..50000.
  const auto zipf_rank = [&] {
    const double u = static_cast<double>(rng() >> 11) / static_cast<double>(1ull << 53);
    return static_cast<size_t>(std::pow(50000.0, u)) - 1;
  };
  const auto word = [&](size_t rank) {
    if (rank < std::size(kCommonWords)) return std::string(kCommonWords[rank]);
    std::string w;  // rare word: spelled from the rank, so the same rank is the same word
    for (size_t r = rank; r > 0; r /= std::size(kSyllables))
      w += kSyllables[r % std::size(kSyllables)];
    return w;
  };
  std::vector<std::string> hanzi;
  for (size_t pos = 0; kHanzi[pos];) {
    const size_t len = (static_cast<uint8_t>(kHanzi[pos]) >= 0xF0) ? 4 : 3;
    hanzi.emplace_back(kHanzi + pos, len);
    pos += len;
  }
  std::string out;
  out.reserve(bytes + 4096);
  while (out.size() < bytes) {
    const size_t kind = uniform(100);
    if (kind < 70) {  // prose paragraph
      for (size_t s = 0, sentences = 2 + uniform(5); s < sentences; ++s) {
        for (size_t w = 0, words = 6 + uniform(18); w < words; ++w) {
          std::string token = word(zipf_rank());
          if (w == 0) token[0] = static_cast<char>(std::toupper(token[0]));
          if (uniform(40) == 0) token = std::to_string(uniform(3000));
          if (uniform(60) == 0) token += "'s";
          out += (w == 0 && s == 0) ? "" : " ";
          out += token;
          if (w + 1 < words && uniform(12) == 0) out += ",";
        }
        out += ".?!"[uniform(10) < 8 ? 0 : 1 + uniform(2)];
      }
      out += "\n\n";
    } else if (kind < 85) {  // code
      const std::string fn = word(100 + zipf_rank()) + "_" + word(zipf_rank());
      out += "def " + fn + "(x, y=" + std::to_string(uniform(100)) + "):\n";
      for (size_t l = 0, lines = 1 + uniform(5); l < lines; ++l) {
        out += "    " + word(zipf_rank()) + " = x * " + std::to_string(uniform(1000)) + " + y  # " +
               word(zipf_rank()) + "\n";
      }
      out += "    return {\"" + word(zipf_rank()) + "\": x, 'n': [1, 2, 3]}\n\n";
    } else {  // Chinese
      for (size_t c = 0, chars = 20 + uniform(80); c < chars; ++c) {
        out += hanzi[std::min(hanzi.size() - 1, zipf_rank() % hanzi.size())];
        if (uniform(15) == 0) out += "，";
      }
      out += "。\n\n";
    }
  }
  return out;
}

// Cuts text into documents of about `target` bytes, at line ends.
std::vector<std::string> SplitDocuments(const std::string& text, size_t target) {
  std::vector<std::string> docs;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = std::min(text.size(), start + target);
    if (end < text.size()) {
      const size_t nl = text.find('\n', end);
      end = nl == std::string::npos ? text.size() : nl + 1;
    }
    docs.push_back(text.substr(start, end - start));
    start = end;
  }
  return docs;
}

uint64_t Checksum(uint64_t h, const std::vector<tidal::TokenId>& ids) {
  for (tidal::TokenId id : ids) h = h * 1000003 + static_cast<uint64_t>(id) + 1;
  return h;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

absl::StatusOr<Json> RunBaseline(const Args& args, const std::vector<std::string>& docs) {
  std::string python = args.python;
  if (python.empty()) {
    const char* env = std::getenv("TIDAL_PYTHON");
    python = env ? env : ".venv/bin/python";
  }
  if (!std::filesystem::exists(args.script)) {
    return absl::NotFoundError(
        absl::StrCat("baseline script ", args.script,
                     " not found (run from the repository root, or pass --script)"));
  }
  const std::filesystem::path corpus = std::filesystem::temp_directory_path() /
                                       absl::StrCat("tidal_bench_tokenizer_", getpid(), ".json");
  {
    std::ofstream out(corpus);
    out << Json(docs).dump();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", corpus.string()));
  }
  const std::string cmd = absl::StrCat(ShellQuote(python), " ", ShellQuote(args.script),
                                       " --tokenizer ", ShellQuote(args.tokenizer), " --corpus ",
                                       ShellQuote(corpus.string()), " --repeat ", args.repeat);
  absl::StatusOr<CommandOutput> run = RunCommand(cmd);
  std::filesystem::remove(corpus);
  if (!run.ok()) return absl::InternalError(absl::StrCat("cannot run: ", cmd));
  const std::string& output = run->out;
  if (const int rc = run->exit_code; rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("baseline failed (exit ", rc, "): ", cmd,
                     " (python with `tokenizers` needed; --python or TIDAL_PYTHON picks it)"));
  }
  Json result = Json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (result.is_discarded())
    return absl::InternalError(absl::StrCat("baseline printed no JSON: ", output));
  return result;
}

std::function<absl::Status()> Setup(CLI::App& sub) {
  auto args = std::make_shared<Args>();
  sub.add_option("--tokenizer", args->tokenizer, "\"byte\" or a directory holding tokenizer.json")
      ->capture_default_str();
  sub.add_option("--mb", args->mb, "Size of the synthetic corpus in MB (10^6 bytes)")
      ->capture_default_str();
  sub.add_option("--file", args->file,
                 "Benchmark on this text file instead of the synthetic corpus");
  sub.add_option("--repeat", args->repeat, "Runs per side; the best counts")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub.add_option("--python", args->python,
                 "Python with `tokenizers` (default $TIDAL_PYTHON or .venv/bin/python)");
  sub.add_option("--script", args->script, "Baseline script")->capture_default_str();
  sub.add_flag("--no-baseline", args->no_baseline, "Measure tidal only");
  return [args]() -> absl::Status {
    std::string text;
    std::string source;
    if (!args->file.empty()) {
      std::ifstream in(args->file, std::ios::binary);
      if (!in) return absl::NotFoundError(absl::StrCat("--file: cannot open ", args->file));
      std::ostringstream ss;
      ss << in.rdbuf();
      text = ss.str();
      source = args->file;
    } else {
      if (args->mb <= 0) return absl::InvalidArgumentError("--mb must be positive");
      text = SyntheticCorpus(static_cast<size_t>(args->mb * 1e6));
      source = "synthetic (prose 70%, code 15%, Chinese 15%; seeded)";
    }
    const std::vector<std::string> docs = SplitDocuments(text, 4096);

    double best = 1e300, best_cpu = 1e300, load_seconds = 0;
    uint64_t checksum = 0;
    size_t tokens = 0;
    std::string describe;
    for (int r = 0; r < args->repeat; ++r) {
      const auto load_start = tidal::MonoNow();
      TIDAL_ASSIGN_OR_RETURN(std::unique_ptr<tidal::Tokenizer> tok,
                             tidal::LoadTokenizer(args->tokenizer));
      load_seconds = tidal::SecondsSince(load_start);
      describe = tok->Describe();
      std::vector<std::vector<tidal::TokenId>> ids(docs.size());
      const auto start = tidal::MonoNow();
      const double start_cpu = tidal::ProcessCpuSeconds();
      for (size_t d = 0; d < docs.size(); ++d) ids[d] = tok->Encode(docs[d]);
      best_cpu = std::min(best_cpu, tidal::ProcessCpuSeconds() - start_cpu);
      best = std::min(best, tidal::SecondsSince(start));
      checksum = 0;
      tokens = 0;
      for (const auto& v : ids) {
        checksum = Checksum(checksum, v);
        tokens += v.size();
      }
    }
    const double mb = static_cast<double>(text.size()) / 1e6;
    Json out = {
        {"bench", "tokenizer"},
        {"tokenizer", describe},
        {"corpus", {{"source", source}, {"bytes", text.size()}, {"documents", docs.size()}}},
        {"repeat", args->repeat},
        {"tokens", tokens},
        {"tidal",
         {{"encode_mb_per_s_cpu", mb / best_cpu},
          {"encode_mb_per_s_wall", mb / best},
          {"cpu_seconds", best_cpu},
          {"wall_seconds", best},
          {"load_seconds", load_seconds}}},
    };
    if (args->no_baseline || args->tokenizer == "byte") {
      out["baseline"] = nullptr;  // HF has no equivalent of the byte tokenizer
    } else {
      TIDAL_ASSIGN_OR_RETURN(Json base, RunBaseline(*args, docs));
      const double seconds = base["seconds"].get<double>();
      const double cpu_seconds = base["cpu_seconds"].get<double>();
      const bool match = base["checksum"].get<std::string>() == std::to_string(checksum) &&
                         base["tokens"].get<size_t>() == tokens;
      out["baseline"] = {{"name", base["name"]},
                         {"encode_mb_per_s_cpu", mb / cpu_seconds},
                         {"encode_mb_per_s_wall", mb / seconds},
                         {"cpu_seconds", cpu_seconds},
                         {"wall_seconds", seconds},
                         {"tokens", base["tokens"]}};
      out["ids_match"] = match;
      out["speedup_cpu"] = cpu_seconds / best_cpu;
      out["speedup_wall"] = seconds / best;
    }
    std::cout << out.dump(2) << "\n";
    return absl::OkStatus();
  };
}

TIDAL_CLI_COMMAND("bench tokenizer",
                  "Encode throughput of tidal's tokenizer vs HF tokenizers (same run)", Setup);

}  // namespace
