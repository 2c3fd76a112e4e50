#include "core/tokenizer_json.h"

#include "core/unicode.h"

namespace tidal {
namespace {

class Scanner {
 public:
  Scanner(std::string_view text, const std::string& source) : s_(text), source_(source) {}

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": invalid JSON at byte ", p_, ": ", std::string(what)));
  }
  void SkipWs() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\r' || s_[p_] == '\t'))
      ++p_;
  }
  // Skips whitespace; consumes c if it is next.
  bool Consume(char c) {
    SkipWs();
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  absl::Status Expect(char c) {
    if (Consume(c)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", std::string(1, c), "'"));
  }
  bool AtEnd() {
    SkipWs();
    return p_ >= s_.size();
  }

  absl::Status String(std::string& out) {
    TIDAL_RETURN_IF_ERROR(Expect('"'));
    out.clear();
    for (;;) {
      const size_t start = p_;
      while (p_ < s_.size() && s_[p_] != '"' && s_[p_] != '\\') {
        if (static_cast<uint8_t>(s_[p_]) < 0x20) return Error("control character in string");
        ++p_;
      }
      out.append(s_.substr(start, p_ - start));
      if (p_ >= s_.size()) return Error("unterminated string");
      if (s_[p_++] == '"') return absl::OkStatus();
      if (p_ >= s_.size()) return Error("unterminated escape");
      const char e = s_[p_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          char32_t cp = 0;
          TIDAL_RETURN_IF_ERROR(Hex4(cp));
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
            char32_t lo = 0;
            if (p_ + 1 >= s_.size() || s_[p_] != '\\' || s_[p_ + 1] != 'u')
              return Error("lone surrogate");
            p_ += 2;
            TIDAL_RETURN_IF_ERROR(Hex4(lo));
            if (lo < 0xDC00 || lo > 0xDFFF) return Error("invalid surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("lone surrogate");
          }
          unicode::AppendUtf8(cp, out);
          break;
        }
        default:
          return Error("invalid escape");
      }
    }
  }

  absl::Status Int(int64_t& out) {
    SkipWs();
    const size_t start = p_;
    bool negative = false;
    if (p_ < s_.size() && s_[p_] == '-') {
      negative = true;
      ++p_;
    }
    int64_t v = 0;
    size_t digits = 0;
    while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9' && digits < 18) {
      v = v * 10 + (s_[p_++] - '0');
      ++digits;
    }
    if (digits == 0 || (p_ < s_.size() && (s_[p_] == '.' || s_[p_] == 'e' || s_[p_] == 'E' ||
                                           (s_[p_] >= '0' && s_[p_] <= '9')))) {
      p_ = start;
      return Error("expected an integer of at most 18 digits");
    }
    out = negative ? -v : v;
    return absl::OkStatus();
  }

  // Skips one value of any kind and parses it with nlohmann (used for the small sections).
  absl::Status Value(nlohmann::json& out) {
    SkipWs();
    const size_t start = p_;
    TIDAL_RETURN_IF_ERROR(SkipValue());
    out = nlohmann::json::parse(s_.substr(start, p_ - start), nullptr, /*allow_exceptions=*/false);
    if (out.is_discarded()) {
      p_ = start;
      return Error("malformed value");
    }
    return absl::OkStatus();
  }

  // Iterates the members of an object: calls member(key) with the scanner before the value.
  template <typename F>
  absl::Status Object(F member) {
    TIDAL_RETURN_IF_ERROR(Expect('{'));
    if (Consume('}')) return absl::OkStatus();
    std::string key;
    do {
      TIDAL_RETURN_IF_ERROR(String(key));
      TIDAL_RETURN_IF_ERROR(Expect(':'));
      TIDAL_RETURN_IF_ERROR(member(key));
    } while (Consume(','));
    return Expect('}');
  }
  template <typename F>
  absl::Status Array(F element) {
    TIDAL_RETURN_IF_ERROR(Expect('['));
    if (Consume(']')) return absl::OkStatus();
    size_t index = 0;
    do {
      TIDAL_RETURN_IF_ERROR(element(index++));
    } while (Consume(','));
    return Expect(']');
  }
  char Peek() {
    SkipWs();
    return p_ < s_.size() ? s_[p_] : '\0';
  }

 private:
  absl::Status Hex4(char32_t& cp) {
    if (p_ + 4 > s_.size()) return Error("truncated \\u escape");
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[p_++];
      cp <<= 4;
      if (c >= '0' && c <= '9')
        cp |= c - '0';
      else if (c >= 'a' && c <= 'f')
        cp |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        cp |= c - 'A' + 10;
      else
        return Error("bad hex digit in \\u escape");
    }
    return absl::OkStatus();
  }

  absl::Status SkipValue() {
    SkipWs();
    if (p_ >= s_.size()) return Error("unexpected end");
    const char c = s_[p_];
    if (c == '"') {
      std::string ignored;
      return String(ignored);
    }
    if (c == '{' || c == '[') {
      int depth = 0;
      while (p_ < s_.size()) {
        const char d = s_[p_];
        if (d == '"') {
          std::string ignored;
          TIDAL_RETURN_IF_ERROR(String(ignored));
          continue;
        }
        ++p_;
        if (d == '{' || d == '[') ++depth;
        if ((d == '}' || d == ']') && --depth == 0) return absl::OkStatus();
      }
      return Error("unterminated object or array");
    }
    // number, true, false, null
    const size_t start = p_;
    while (p_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[p_])) || s_[p_] == '-' ||
                              s_[p_] == '+' || s_[p_] == '.')) {
      ++p_;
    }
    return p_ > start ? absl::OkStatus() : Error("unexpected character");
  }

  std::string_view s_;
  size_t p_ = 0;
  const std::string& source_;
};

}  // namespace

absl::StatusOr<TokenizerJson> ParseTokenizerJson(std::string_view text, const std::string& source) {
  TokenizerJson out;
  Scanner sc(text, source);
  std::string token, left, right;
  const auto model_member = [&](const std::string& key) -> absl::Status {
    if (key == "vocab" && sc.Peek() == '{') {
      out.has_vocab = true;
      out.vocab.reserve(text.size() / 64);
      return sc.Object([&](const std::string& tok) -> absl::Status {
        int64_t id;
        TIDAL_RETURN_IF_ERROR(sc.Int(id));
        out.vocab.emplace_back(tok, id);
        return absl::OkStatus();
      });
    }
    if (key == "merges" && sc.Peek() == '[') {
      out.has_merges = true;
      out.merges.reserve(text.size() / 64);
      return sc.Array([&](size_t index) -> absl::Status {
        if (sc.Peek() == '"') {  // "a b"
          TIDAL_RETURN_IF_ERROR(sc.String(token));
          const size_t space = token.find(' ');
          if (space == std::string::npos) {
            return absl::InvalidArgumentError(
                absl::StrCat(source, ": model.merges[", index, "] \"", token, "\" is not \"a b\""));
          }
          out.merges.emplace_back(token.substr(0, space), token.substr(space + 1));
          return absl::OkStatus();
        }
        TIDAL_RETURN_IF_ERROR(sc.Expect('['));
        TIDAL_RETURN_IF_ERROR(sc.String(left));
        TIDAL_RETURN_IF_ERROR(sc.Expect(','));
        TIDAL_RETURN_IF_ERROR(sc.String(right));
        if (!sc.Consume(']')) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": model.merges[", index, "] is not a pair [a, b]"));
        }
        out.merges.emplace_back(left, right);
        return absl::OkStatus();
      });
    }
    return sc.Value(out.model[key]);
  };
  TIDAL_RETURN_IF_ERROR(sc.Object([&](const std::string& key) -> absl::Status {
    if (key == "model" && sc.Peek() == '{') return sc.Object(model_member);
    return sc.Value(out.root[key]);
  }));
  if (!sc.AtEnd()) return sc.Error("trailing characters");
  return out;
}

}  // namespace tidal
