#include "core/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include <prometheus/text_serializer.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/version.h"

namespace tidal {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using nlohmann::json;

// Units a histogram or summary may be measured in (Prometheus base units, or counted things).
constexpr const char* kUnitSuffixes[] = {"_seconds", "_bytes", "_tokens", "_ratio", "_blocks",
                                         "_sequences", "_groups", "_versions"};

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::Counter: return "counter";
    case MetricType::Gauge: return "gauge";
    case MetricType::Summary: return "summary";
    case MetricType::Histogram: return "histogram";
    case MetricType::Untyped: return "untyped";
  }
  return "untyped";
}

absl::StatusOr<MetricType> TypeFromName(const std::string& s) {
  for (MetricType t : {MetricType::Counter, MetricType::Gauge, MetricType::Summary,
                       MetricType::Histogram, MetricType::Untyped}) {
    if (s == TypeName(t)) return t;
  }
  return absl::InvalidArgumentError(absl::StrCat("metric type '", s, "' is unknown"));
}

// JSON has no NaN/Inf: they travel as strings.
json Num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return v;
}

double FromNum(const json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s == "+Inf") return std::numeric_limits<double>::infinity();
    if (s == "-Inf") return -std::numeric_limits<double>::infinity();
  }
  return std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

prometheus::Registry& ProcessRegistry() {
  static auto* registry = new prometheus::Registry();
  return *registry;
}

void CheckMetricConvention(const std::string& name, MetricType type, const std::string& help) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(absl::StrCat("metric ", name, ": ", what));
  };
  if (help.empty()) fail("needs a help text");
  const bool total = absl::EndsWith(name, "_total");
  if (type == MetricType::Counter && !total) fail("counter names end in _total");
  if (type != MetricType::Counter && total) fail("only counters end in _total");
  if (type == MetricType::Histogram) {
    bool unit = false;
    for (const char* s : kUnitSuffixes) unit |= absl::EndsWith(name, s);
    if (!unit) fail("histograms name their unit (_seconds, _bytes, _tokens, ...)");
  }
}

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& r, const std::string& name,
                                                       const std::string& help) {
  CheckMetricConvention(name, MetricType::Counter, help);
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& r, const std::string& name,
                                                   const std::string& help) {
  CheckMetricConvention(name, MetricType::Gauge, help);
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& r,
                                                           const std::string& name,
                                                           const std::string& help) {
  CheckMetricConvention(name, MetricType::Histogram, help);
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}

prometheus::Family<prometheus::Summary>& SummaryFamily(prometheus::Registry& r, const std::string& name,
                                                       const std::string& help) {
  CheckMetricConvention(name, MetricType::Summary, help);
  return prometheus::BuildSummary().Name(name).Help(help).Register(r);
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

std::vector<double> LatencyBuckets() { return ExponentialBuckets(0.001, 2, 16); }
std::vector<double> ByteBuckets() { return ExponentialBuckets(1024, 4, 13); }
std::vector<double> TokenBuckets() { return ExponentialBuckets(1, 2, 17); }

std::vector<double> BucketsForName(const std::string& name) {
  if (absl::EndsWith(name, "_seconds")) return LatencyBuckets();
  if (absl::EndsWith(name, "_bytes")) return ByteBuckets();
  return TokenBuckets();
}

const prometheus::Summary::Quantiles& DefaultQuantiles() {
  static const auto* q = new prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}};
  return *q;
}

void AddLabels(std::vector<MetricFamily>* families, const MetricLabelMap& labels) {
  for (MetricFamily& f : *families) {
    for (ClientMetric& m : f.metric) {
      for (const auto& [k, v] : labels) {
        bool present = false;
        for (const auto& l : m.label) present |= l.name == k;
        if (!present) m.label.push_back({k, v});
      }
      std::sort(m.label.begin(), m.label.end());
    }
  }
}

std::pair<std::vector<MetricFamily>, int> MergeFamilies(std::vector<MetricFamily> families) {
  std::vector<MetricFamily> out;
  std::map<std::string, size_t> index;
  int dropped = 0;
  for (MetricFamily& f : families) {
    auto it = index.find(f.name);
    if (it == index.end()) {
      index.emplace(f.name, out.size());
      out.push_back(std::move(f));
      continue;
    }
    MetricFamily& into = out[it->second];
    if (into.type != f.type) {
      ++dropped;
      continue;
    }
    for (ClientMetric& m : f.metric) into.metric.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(), [](const MetricFamily& a, const MetricFamily& b) { return a.name < b.name; });
  return {std::move(out), dropped};
}

std::string RenderText(const std::vector<MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

json FamiliesToJson(const std::vector<MetricFamily>& families) {
  json out = json::array();
  for (const MetricFamily& f : families) {
    json metrics = json::array();
    for (const ClientMetric& m : f.metric) {
      json labels = json::object();
      for (const auto& l : m.label) labels[l.name] = l.value;
      json jm = {{"labels", labels}};
      switch (f.type) {
        case MetricType::Counter: jm["value"] = Num(m.counter.value); break;
        case MetricType::Gauge: jm["value"] = Num(m.gauge.value); break;
        case MetricType::Untyped: jm["value"] = Num(m.untyped.value); break;
        case MetricType::Summary: {
          json q = json::array();
          for (const auto& x : m.summary.quantile) q.push_back({Num(x.quantile), Num(x.value)});
          jm["count"] = m.summary.sample_count;
          jm["sum"] = Num(m.summary.sample_sum);
          jm["quantiles"] = q;
          break;
        }
        case MetricType::Histogram: {
          json b = json::array();
          for (const auto& x : m.histogram.bucket) b.push_back({Num(x.upper_bound), x.cumulative_count});
          jm["count"] = m.histogram.sample_count;
          jm["sum"] = Num(m.histogram.sample_sum);
          jm["buckets"] = b;
          break;
        }
      }
      metrics.push_back(std::move(jm));
    }
    out.push_back({{"name", f.name}, {"help", f.help}, {"type", TypeName(f.type)}, {"metrics", metrics}});
  }
  return out;
}

absl::StatusOr<std::vector<MetricFamily>> FamiliesFromJson(const json& j) {
  if (!j.is_array()) return absl::InvalidArgumentError("metric families: expected a JSON array");
  std::vector<MetricFamily> out;
  try {
    for (const json& jf : j) {
      MetricFamily f;
      f.name = jf.at("name").get<std::string>();
      f.help = jf.value("help", "");
      absl::StatusOr<MetricType> type = TypeFromName(jf.at("type").get<std::string>());
      if (!type.ok()) return absl::InvalidArgumentError(absl::StrCat(f.name, ": ", type.status().message()));
      f.type = *type;
      for (const json& jm : jf.at("metrics")) {
        ClientMetric m;
        for (const auto& [k, v] : jm.at("labels").items()) m.label.push_back({k, v.get<std::string>()});
        switch (f.type) {
          case MetricType::Counter: m.counter.value = FromNum(jm.at("value")); break;
          case MetricType::Gauge: m.gauge.value = FromNum(jm.at("value")); break;
          case MetricType::Untyped: m.untyped.value = FromNum(jm.at("value")); break;
          case MetricType::Summary:
            m.summary.sample_count = jm.at("count").get<uint64_t>();
            m.summary.sample_sum = FromNum(jm.at("sum"));
            for (const json& q : jm.at("quantiles")) m.summary.quantile.push_back({FromNum(q.at(0)), FromNum(q.at(1))});
            break;
          case MetricType::Histogram:
            m.histogram.sample_count = jm.at("count").get<uint64_t>();
            m.histogram.sample_sum = FromNum(jm.at("sum"));
            for (const json& b : jm.at("buckets")) {
              m.histogram.bucket.push_back({b.at(1).get<uint64_t>(), FromNum(b.at(0))});
            }
            break;
        }
        f.metric.push_back(std::move(m));
      }
      out.push_back(std::move(f));
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("metric families: ", e.what()));
  }
  return out;
}

void RecordBuildInfo(prometheus::Registry& r) {
  GaugeFamily(r, "tidal_build_info", "tidal build: version, LibTorch version, CUDA compiled in; always 1")
      .Add({{"version", kVersion}, {"torch", TorchVersion()}, {"cuda", kBuiltWithCuda ? "yes" : "no"}})
      .Set(1);
}

// Set when the library loads, i.e. at process start.
const double kProcessStart = static_cast<double>(time(nullptr));

void UpdateProcessMetrics() {
  prometheus::Registry& r = ProcessRegistry();
  static auto& rss = GaugeFamily(r, "process_resident_memory_bytes", "Resident memory size in bytes").Add({});
  static auto& vsz = GaugeFamily(r, "process_virtual_memory_bytes", "Virtual memory size in bytes").Add({});
  static auto& fds = GaugeFamily(r, "process_open_fds", "Number of open file descriptors").Add({});
  static auto& start = GaugeFamily(r, "process_start_time_seconds",
                                   "Start time of the process since the Unix epoch in seconds").Add({});
  static auto& cpu = CounterFamily(r, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds").Add({});
  static std::mutex mu;
  static double cpu_seen = 0;
  std::lock_guard<std::mutex> lock(mu);
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream statm("/proc/self/statm");
  double size = 0, resident = 0;
  if (statm >> size >> resident) {
    vsz.Set(size * page);
    rss.Set(resident * page);
  }
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    // Fields after the command name (which may hold spaces) start at the last ')'.
    std::vector<std::string> f = absl::StrSplit(line.substr(line.rfind(')') + 2), ' ');
    if (f.size() > 12) {
      double total = (std::atof(f[11].c_str()) + std::atof(f[12].c_str())) / ticks;  // utime + stime
      if (total > cpu_seen) cpu.Increment(total - cpu_seen);
      cpu_seen = std::max(cpu_seen, total);
    }
  }
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  fds.Set(n - 1);  // the directory stream itself
  start.Set(kProcessStart);
}

}  // namespace tidal
