#include "envs/builtins/expression.h"

#include <numeric>
#include <optional>

#include "absl/strings/str_cat.h"

namespace tidal::envs::builtins {
namespace {

std::optional<Rational> Make(__int128 num, __int128 den) {
  if (den == 0) return std::nullopt;
  if (den < 0) {
    num = -num;
    den = -den;
  }
  __int128 a = num < 0 ? -num : num, b = den;
  while (b != 0) {
    __int128 t = a % b;
    a = b;
    b = t;
  }
  if (a > 1) {
    num /= a;
    den /= a;
  }
  constexpr __int128 kMax = INT64_MAX;
  if (num > kMax || num < -kMax || den > kMax) return std::nullopt;
  return Rational{static_cast<int64_t>(num), static_cast<int64_t>(den)};
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  absl::StatusOr<Evaluated> Run() {
    Evaluated out;
    auto v = Expr(0, &out.literals);
    if (!v.ok()) return v.status();
    Skip();
    if (pos_ != s_.size()) return Error("unexpected '" + std::string(1, s_[pos_]) + "'");
    out.value = *v;
    return out;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("expression: ", what, " at offset ", pos_));
  }
  void Skip() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  bool Eat(char c) {
    Skip();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  absl::StatusOr<Rational> Arith(char op, Rational a, Rational b) {
    std::optional<Rational> r;
    using I = __int128;
    switch (op) {
      case '+': r = Make(I(a.num) * b.den + I(b.num) * a.den, I(a.den) * b.den); break;
      case '-': r = Make(I(a.num) * b.den - I(b.num) * a.den, I(a.den) * b.den); break;
      case '*': r = Make(I(a.num) * b.num, I(a.den) * b.den); break;
      case '/':
        if (b.num == 0) return Error("division by zero");
        r = Make(I(a.num) * b.den, I(a.den) * b.num);
        break;
    }
    if (!r) return Error("number out of range");
    return *r;
  }
  absl::StatusOr<Rational> Expr(int depth, std::vector<Rational>* lits) {
    auto lhs = Term(depth, lits);
    if (!lhs.ok()) return lhs;
    Rational v = *lhs;
    while (true) {
      char op = Eat('+') ? '+' : Eat('-') ? '-' : 0;
      if (!op) return v;
      auto rhs = Term(depth, lits);
      if (!rhs.ok()) return rhs;
      auto r = Arith(op, v, *rhs);
      if (!r.ok()) return r;
      v = *r;
    }
  }
  absl::StatusOr<Rational> Term(int depth, std::vector<Rational>* lits) {
    auto lhs = Unary(depth, lits);
    if (!lhs.ok()) return lhs;
    Rational v = *lhs;
    while (true) {
      char op = Eat('*') ? '*' : Eat('/') ? '/' : 0;
      if (!op) return v;
      auto rhs = Unary(depth, lits);
      if (!rhs.ok()) return rhs;
      auto r = Arith(op, v, *rhs);
      if (!r.ok()) return r;
      v = *r;
    }
  }
  absl::StatusOr<Rational> Unary(int depth, std::vector<Rational>* lits) {
    if (depth > 64) return Error("nested too deeply");
    if (Eat('-')) {
      auto v = Unary(depth + 1, lits);
      if (!v.ok()) return v;
      return Rational{-v->num, v->den};
    }
    if (Eat('+')) return Unary(depth + 1, lits);
    return Atom(depth, lits);
  }
  absl::StatusOr<Rational> Atom(int depth, std::vector<Rational>* lits) {
    if (Eat('(')) {
      auto v = Expr(depth + 1, lits);
      if (!v.ok()) return v;
      if (!Eat(')')) return Error("expected ')'");
      return v;
    }
    Skip();
    const size_t start = pos_;
    __int128 num = 0, den = 1;
    bool digits = false;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      num = num * 10 + (s_[pos_++] - '0');
      digits = true;
      if (num > INT64_MAX) return Error("number out of range");
    }
    if (digits && pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      bool frac = false;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        num = num * 10 + (s_[pos_++] - '0');
        den *= 10;
        frac = true;
        if (num > INT64_MAX || den > INT64_MAX) return Error("number out of range");
      }
      if (!frac) return Error("expected digits after '.'");
    }
    if (!digits) {
      pos_ = start;
      return pos_ < s_.size() ? Error("expected a number or '('") : Error("unexpected end");
    }
    auto r = Make(num, den);
    if (!r) return Error("number out of range");
    lits->push_back(*r);
    return *r;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

std::string Rational::ToString() const {
  return den == 1 ? std::to_string(num) : std::to_string(num) + "/" + std::to_string(den);
}

std::string Rational::ToDecimal(int digits) const {
  if (den == 1) return std::to_string(num);
  __int128 n = num < 0 ? -static_cast<__int128>(num) : num;
  __int128 scale = 1;
  for (int i = 0; i < digits; ++i) scale *= 10;
  __int128 scaled = (n * scale * 2 + den) / (2 * static_cast<__int128>(den));  // rounded
  const __int128 ip = scaled / scale;
  __int128 fp = scaled % scale;
  std::string frac;
  for (int i = 0; i < digits; ++i) {
    frac.insert(frac.begin(), static_cast<char>('0' + static_cast<int>(fp % 10)));
    fp /= 10;
  }
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  std::string out = (num < 0 && (ip != 0 || !frac.empty()) ? "-" : "") +
                    std::to_string(static_cast<int64_t>(ip));
  if (!frac.empty()) out += "." + frac;
  return out;
}

absl::StatusOr<Evaluated> EvaluateExpression(std::string_view text) {
  return Parser(text).Run();
}

absl::StatusOr<Rational> ParseNumber(std::string_view text) {
  std::string s;
  for (char c : text) {
    if (c != ',' && c != ' ') s += c;  // "1,000" -> "1000"
  }
  if (s.empty()) return absl::InvalidArgumentError("not a number: empty");
  // A single number, optionally signed, or a fraction of two such.
  const size_t slash = s.find('/');
  auto single = [](std::string_view part) -> absl::StatusOr<Rational> {
    auto e = EvaluateExpression(part);
    if (!e.ok() || e->literals.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("not a number: '", std::string(part), "'"));
    }
    for (char c : part) {
      if (c != '-' && c != '+' && c != '.' && (c < '0' || c > '9')) {
        return absl::InvalidArgumentError(absl::StrCat("not a number: '", std::string(part), "'"));
      }
    }
    return e->value;
  };
  if (slash == std::string::npos) return single(s);
  auto a = single(std::string_view(s).substr(0, slash));
  auto b = single(std::string_view(s).substr(slash + 1));
  if (!a.ok() || !b.ok() || b->num == 0) {
    return absl::InvalidArgumentError(absl::StrCat("not a number: '", s, "'"));
  }
  auto e = EvaluateExpression("(" + a->ToString() + ")/(" + b->ToString() + ")");
  if (!e.ok()) return e.status();
  return e->value;
}

}  // namespace tidal::envs::builtins
