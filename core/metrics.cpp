#include "core/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <stdexcept>
#include <type_traits>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tidal {
namespace {

bool ValidMetricName(std::string_view n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool ValidLabelName(std::string_view n) {
  if (n.empty() || n.substr(0, 2) == "__") return false;  // __ is reserved by Prometheus
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

[[noreturn]] void Misuse(std::string_view name, const std::string& what) {
  throw std::invalid_argument(absl::StrCat("metric ", std::string(name), ": ", what));
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

// {a="x",b="y"} plus an optional extra pair (le for histogram buckets); "" when empty.
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    absl::StrAppend(&out, std::string(extra_name), "=\"", std::string(extra_value), "\"");
  }
  out += '}';
  return out;
}

}  // namespace

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);  // shortest form that round-trips
  return std::string(buf, res.ptr);
}

// ---- Histogram ----

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // First bound >= v (Prometheus buckets are "less or equal"); NaN lands in +Inf.
  size_t i = std::isnan(v) ? bounds_.size()
                           : static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                                 bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> Histogram::ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

std::vector<double> Histogram::LinearBuckets(double start, double width, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i) b.push_back(start + width * i);
  return b;
}

std::vector<double> Histogram::DefaultLatencyBuckets() { return ExponentialBuckets(0.001, 2, 15); }

// ---- Family ----

template <class M>
M& Family<M>::Labels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    Misuse(name_, absl::StrCat("expected ", label_names_.size(), " label value(s) for [",
                               absl::StrJoin(label_names_, ", "), "], got ", values.size()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) {
    std::unique_ptr<M> child;
    if constexpr (std::is_same_v<M, Histogram>) {
      child = std::make_unique<Histogram>(bounds_);
    } else {
      child = std::make_unique<M>();
    }
    it = children_.emplace(values, std::move(child)).first;
  }
  return *it->second;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- Registry ----

struct MetricsRegistry::Entry {
  MetricType type;
  std::string help;
  std::vector<std::string> label_names;
  std::vector<double> bounds;
  std::variant<std::unique_ptr<Family<Counter>>, std::unique_ptr<Family<Gauge>>,
               std::unique_ptr<Family<Histogram>>>
      family;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry& MetricsRegistry::Default() {
  static auto* registry = new MetricsRegistry();  // leaked: metrics may be bumped during exit
  return *registry;
}

MetricsRegistry::Entry& MetricsRegistry::Register(std::string_view name, std::string_view help,
                                                  MetricType type,
                                                  std::vector<std::string> label_names,
                                                  std::vector<double> bounds) {
  if (!ValidMetricName(name)) Misuse(name, "name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  if (help.empty()) Misuse(name, "needs a help text");
  if (type == MetricType::kCounter &&
      (name.size() < 6 || name.substr(name.size() - 6) != "_total")) {
    Misuse(name, "counter names end in _total");
  }
  std::set<std::string_view> seen;
  for (const std::string& l : label_names) {
    if (!ValidLabelName(l)) Misuse(name, absl::StrCat("bad label name '", l, "'"));
    if (type == MetricType::kHistogram && l == "le") Misuse(name, "'le' is reserved in histograms");
    if (!seen.insert(l).second) Misuse(name, absl::StrCat("label '", l, "' given twice"));
  }
  if (type == MetricType::kHistogram) {
    for (size_t i = 0; i < bounds.size(); ++i) {
      if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
        Misuse(name, "histogram bounds must be finite and strictly increasing");
      }
    }
  }

  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    Entry& e = *it->second;
    if (e.type != type || e.label_names != label_names || e.bounds != bounds) {
      Misuse(name, absl::StrCat("already registered as a ", TypeName(e.type), " with labels [",
                                absl::StrJoin(e.label_names, ", "),
                                "]; the new registration differs"));
    }
    return e;
  }
  auto e = std::make_unique<Entry>();
  e->type = type;
  e->help = std::string(help);
  e->label_names = label_names;
  e->bounds = bounds;
  std::string n(name);
  switch (type) {
    case MetricType::kCounter:
      e->family = std::unique_ptr<Family<tidal::Counter>>(
          new Family<tidal::Counter>(n, std::move(label_names), {}));
      break;
    case MetricType::kGauge:
      e->family = std::unique_ptr<Family<tidal::Gauge>>(
          new Family<tidal::Gauge>(n, std::move(label_names), {}));
      break;
    case MetricType::kHistogram:
      e->family = std::unique_ptr<Family<tidal::Histogram>>(
          new Family<tidal::Histogram>(n, std::move(label_names), std::move(bounds)));
      break;
  }
  return *families_.emplace(n, std::move(e)).first->second;
}

Family<Counter>& MetricsRegistry::GetCounterFamily(std::string_view name, std::string_view help,
                                                   std::vector<std::string> label_names) {
  Entry& e = Register(name, help, MetricType::kCounter, std::move(label_names), {});
  return *std::get<std::unique_ptr<Family<tidal::Counter>>>(e.family);
}

Family<Gauge>& MetricsRegistry::GetGaugeFamily(std::string_view name, std::string_view help,
                                               std::vector<std::string> label_names) {
  Entry& e = Register(name, help, MetricType::kGauge, std::move(label_names), {});
  return *std::get<std::unique_ptr<Family<tidal::Gauge>>>(e.family);
}

Family<Histogram>& MetricsRegistry::GetHistogramFamily(std::string_view name,
                                                       std::string_view help,
                                                       std::vector<std::string> label_names,
                                                       std::vector<double> bounds) {
  Entry& e = Register(name, help, MetricType::kHistogram, std::move(label_names),
                      std::move(bounds));
  return *std::get<std::unique_ptr<Family<tidal::Histogram>>>(e.family);
}

std::string MetricsRegistry::Render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, entry] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(entry->help), "\n# TYPE ", name, " ",
                    TypeName(entry->type), "\n");
    std::visit(
        [&](const auto& family) {
          using F = std::decay_t<decltype(*family)>;
          std::lock_guard<std::mutex> family_lock(family->mu_);
          for (const auto& [values, child] : family->children_) {
            if constexpr (std::is_same_v<F, Family<tidal::Histogram>>) {
              tidal::Histogram::Snapshot snap = child->snapshot();
              for (size_t i = 0; i <= snap.bounds.size(); ++i) {
                std::string le = i < snap.bounds.size() ? FormatMetricValue(snap.bounds[i]) : "+Inf";
                absl::StrAppend(&out, name, "_bucket", LabelSet(family->label_names_, values, "le", le),
                                " ", snap.cumulative[i], "\n");
              }
              std::string labels = LabelSet(family->label_names_, values);
              absl::StrAppend(&out, name, "_sum", labels, " ", FormatMetricValue(snap.sum), "\n",
                              name, "_count", labels, " ", snap.count, "\n");
            } else {
              absl::StrAppend(&out, name, LabelSet(family->label_names_, values), " ",
                              FormatMetricValue(child->value()), "\n");
            }
          }
        },
        entry->family);
  }
  return out;
}

}  // namespace tidal
