// builtin:letter_count: "how many times does letter L occur in word W?", exact-answer reward.
//
// args (all optional):
//   min_len, max_len      length range of the random strings (default 3..8)
//   alphabet              characters the random strings are made of (default a-z)
//   words                 a list of words to ask about instead of random strings
//   words_file            a file with one word per line (same role as words)
//   letters               characters asked about (default: the alphabet)
//   letter_in_word_prob   chance the letter is drawn from the word itself (default 0.5), so
//                         non-zero answers are common; otherwise uniform over `letters`
//   prompt_template       default "count {letter} in {word}:"
//   answer_template       default " {count}"; the task's "reference" (SFT target)
//   eval_fraction         share of (word, letter) pairs held out for the eval split (0.1)
//   exact                 reward only a response that is the count and nothing else (surrounding
//                         whitespace aside), so a policy cannot skip the stop token (false)
// Reward: 1.0 when the first integer in the response (answer_parse.h) equals the count,
// else 0.0; with `exact`, the whole stripped response must be the count's digits. The answer format the templates teach is " 3": a space and the digits.
// Only single-byte (ASCII) characters: the quickstart's model reads bytes.
#include <fstream>

#include "envs/builtins/answer_parse.h"
#include "envs/builtins/builtins.h"
#include "envs/builtins/env_args.h"
#include "envs/builtins/task_sampling.h"

namespace tidal::envs::builtins {
namespace {

using nlohmann::json;

std::string Substitute(std::string text, const std::string& key, const std::string& value) {
  const std::string pattern = "{" + key + "}";
  for (size_t pos = text.find(pattern); pos != std::string::npos;
       pos = text.find(pattern, pos + value.size())) {
    text.replace(pos, pattern.size(), value);
  }
  return text;
}

class LetterCount final : public BuiltinEnv {
 public:
  explicit LetterCount(const json& args) {
    EnvArgs a(args, "letter_count");
    min_len_ = a.Int("min_len", 3, 1, 4096);
    max_len_ = a.Int("max_len", 8, 1, 4096);
    if (max_len_ < min_len_) a.Fail("max_len", "must be >= min_len");
    alphabet_ = a.String("alphabet", "abcdefghijklmnopqrstuvwxyz");
    words_ = a.Strings("words", {});
    const std::string words_file = a.String("words_file", "");
    if (!words_file.empty()) {
      if (!words_.empty()) a.Fail("words_file", "give either words or words_file, not both");
      std::ifstream in(words_file);
      if (!in) a.Fail("words_file", "cannot open '" + words_file + "'");
      for (std::string line; std::getline(in, line);) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (!line.empty()) words_.push_back(line);
      }
      if (words_.empty()) a.Fail("words_file", "'" + words_file + "' has no words");
    }
    letters_ = a.String("letters", alphabet_);
    letter_in_word_prob_ = a.Double("letter_in_word_prob", 0.5, 0.0, 1.0);
    prompt_template_ = a.String("prompt_template", "count {letter} in {word}:");
    answer_template_ = a.String("answer_template", " {count}");
    eval_fraction_ = a.Double("eval_fraction", 0.1, 0.0, 0.9);
    exact_ = a.Bool("exact", false);
    a.Finish();

    CheckChars(a, "alphabet", alphabet_);
    CheckChars(a, "letters", letters_);
    if (alphabet_.empty() && words_.empty()) a.Fail("alphabet", "must not be empty");
    if (letters_.empty()) a.Fail("letters", "must not be empty");
    for (const auto& w : words_) {
      if (w.empty()) a.Fail("words", "contains an empty word");
      CheckChars(a, "words", w);
    }
    if (prompt_template_.find("{word}") == std::string::npos ||
        prompt_template_.find("{letter}") == std::string::npos) {
      a.Fail("prompt_template", "must contain {word} and {letter}");
    }
    if (answer_template_.find("{count}") == std::string::npos) {
      a.Fail("answer_template", "must contain {count}");
    }
  }

  json Reset(uint64_t seed, Split split) override {
    return SampleInSplit(seed, split, eval_fraction_, "letter_count", [&](Rng& rng) {
      std::string word;
      if (!words_.empty()) {
        word = words_[rng.Below(words_.size())];
      } else {
        const int64_t len = rng.Range(min_len_, max_len_);
        for (int64_t i = 0; i < len; ++i) word += alphabet_[rng.Below(alphabet_.size())];
      }
      std::string in_word;  // askable letters present in the word
      for (char c : letters_) {
        if (word.find(c) != std::string::npos) in_word += c;
      }
      const bool pick_from_word = !in_word.empty() && rng.Uniform() < letter_in_word_prob_;
      const std::string& pool = pick_from_word ? in_word : letters_;
      const char letter = pool[rng.Below(pool.size())];
      int64_t count = 0;
      for (char c : word) count += c == letter;

      const std::string letter_s(1, letter);
      std::string prompt = Substitute(Substitute(prompt_template_, "word", word), "letter",
                                      letter_s);
      std::string reference = Substitute(answer_template_, "count", std::to_string(count));
      json task = {{"prompt", prompt},
                   {"messages", json::array({{{"role", "user"}, {"content", prompt}}})},
                   {"hidden", {{"word", word}, {"letter", letter_s}, {"count", count}}},
                   {"reference", reference}};
      return std::pair<std::string, json>(word + '\0' + letter_s, std::move(task));
    });
  }

  json Score(const json& hidden, std::string_view response) override {
    if (!hidden.is_object() || !hidden.contains("count") || !hidden["count"].is_number_integer()) {
      throw EnvError("letter_count: score: hidden value lacks an integer \"count\": " +
                     hidden.dump());
    }
    const int64_t expected = hidden["count"].get<int64_t>();
    const std::optional<int64_t> parsed = FirstInteger(response);
    json info = {{"expected", expected}, {"parsed", parsed ? json(*parsed) : json(nullptr)}};
    bool correct = parsed && *parsed == expected;
    if (exact_) {
      // " 0000000" (no stop token, cut at max_new_tokens) parses as 0 but is not an answer.
      const size_t b = response.find_first_not_of(" \t\r\n");
      const size_t e = response.find_last_not_of(" \t\r\n");
      const std::string_view stripped =
          b == std::string_view::npos ? std::string_view() : response.substr(b, e - b + 1);
      correct = stripped == std::to_string(expected);
    }
    return {{"reward", correct ? 1.0 : 0.0}, {"info", info}};
  }

 private:
  static void CheckChars(const EnvArgs& a, const std::string& key, const std::string& s) {
    for (unsigned char c : s) {
      if (c < 0x21 || c > 0x7e || c == '{' || c == '}') {
        a.Fail(key, "only printable ASCII without spaces or braces is supported, found byte " +
                        std::to_string(c));
      }
    }
  }

  int64_t min_len_, max_len_;
  std::string alphabet_, letters_;
  std::vector<std::string> words_;
  double letter_in_word_prob_, eval_fraction_;
  std::string prompt_template_, answer_template_;
  bool exact_ = false;
};

}  // namespace

TIDAL_BUILTIN_ENV(LetterCountApi, LetterCount, "letter_count",
                  "count a letter in a word; exact-answer reward")

}  // namespace tidal::envs::builtins
