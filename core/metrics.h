// Metrics registry: counters, gauges and histograms with labels, rendered in the Prometheus text
// exposition format 0.0.4 (what GET /metrics serves, see core/metrics_server.h).
//
// Contract:
// - Registration (GetCounter/GetGauge/GetHistogram and their *Family forms) and Labels()
//   lookups take a mutex; updates (Inc/Set/Observe) are lock-free atomics. Hot paths look a child up
//   once and keep the reference: references stay valid for the registry's lifetime.
// - Registering a name again with the same type, label names and buckets returns
//   the existing family, so independent modules can share one metric. Bad names, a counter
//   without the `_total` suffix, empty help, a clash with another type or labels, or a Labels()
//   call with the wrong number of values are programming errors: they throw std::invalid_argument
//   naming the metric (the first test run catches them).
// - Label values are arbitrary UTF-8 (worker names, recipe names); rendering escapes them.
// - Render() may run concurrently with updates. Each sample is read atomically; a histogram's
//   _count is the sum of its buckets so +Inf and _count always agree.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tidal {

class Counter {
 public:
  // `v` must be >= 0 (counters only go up); negative values are ignored.
  void Inc(double v = 1.0) {
    if (v > 0) value_.fetch_add(v, std::memory_order_relaxed);
  }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Inc(double v = 1.0) { value_.fetch_add(v, std::memory_order_relaxed); }
  void Dec(double v = 1.0) { value_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  // `bounds`: strictly increasing finite upper bounds; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf last
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

  // Powers-of-`factor` buckets: start, start*factor, ... (count of them).
  static std::vector<double> ExponentialBuckets(double start, double factor, int count);
  static std::vector<double> LinearBuckets(double start, double width, int count);
  // 1 ms .. ~16 s: the default for latencies in seconds.
  static std::vector<double> DefaultLatencyBuckets();

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 (the +Inf bucket)
  std::atomic<double> sum_{0.0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// All children of one metric name, one per distinct label-value tuple.
template <class M>
class Family {
 public:
  // The child for these label values (in the order of the family's label names), created on
  // first use. Throws std::invalid_argument on the wrong number of values.
  M& Labels(const std::vector<std::string>& values);
  M& Labels(std::initializer_list<std::string_view> values) {
    return Labels(std::vector<std::string>(values.begin(), values.end()));
  }

 private:
  friend class MetricsRegistry;
  Family(std::string name, std::vector<std::string> label_names, std::vector<double> bounds)
      : name_(std::move(name)), label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}

  const std::string name_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;  // sorted: stable output
};

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // The process-wide registry the /metrics endpoint serves unless told otherwise.
  static MetricsRegistry& Default();

  // Get-or-create: the family registered under `name`, created on first call.
  Family<Counter>& GetCounterFamily(std::string_view name, std::string_view help,
                                    std::vector<std::string> label_names);
  Family<Gauge>& GetGaugeFamily(std::string_view name, std::string_view help,
                                std::vector<std::string> label_names);
  Family<Histogram>& GetHistogramFamily(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> bounds);

  // Unlabeled shorthands.
  Counter& GetCounter(std::string_view name, std::string_view help) {
    return GetCounterFamily(name, help, {}).Labels(std::vector<std::string>{});
  }
  Gauge& GetGauge(std::string_view name, std::string_view help) {
    return GetGaugeFamily(name, help, {}).Labels(std::vector<std::string>{});
  }
  Histogram& GetHistogram(std::string_view name, std::string_view help,
                          std::vector<double> bounds) {
    return GetHistogramFamily(name, help, {}, std::move(bounds)).Labels(std::vector<std::string>{});
  }

  // Prometheus text exposition format 0.0.4, families sorted by name.
  std::string Render() const;

 private:
  struct Entry;
  Entry& Register(std::string_view name, std::string_view help, MetricType type,
                  std::vector<std::string> label_names, std::vector<double> bounds);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> families_;
};

// The Content-Type for Render()'s output.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Formatting helpers, exposed for tests: label value escaping (\\, \", \n) and sample values
// (shortest round-trip decimal, +Inf, -Inf, NaN).
std::string EscapeLabelValue(std::string_view v);
std::string FormatMetricValue(double v);

}  // namespace tidal
