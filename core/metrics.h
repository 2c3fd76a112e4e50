// Metrics on prometheus-cpp (Debian's prometheus-cpp-dev): the process registry, naming rules,
// bucket presets, the text exposition and the codec that carries a worker's metrics to the
// controller over the control plane.
//
// Contract:
// - prometheus-cpp does the bookkeeping: families, labelled children, counters, gauges,
//   histograms and summaries are its types; updates are thread-safe, and Registry::Collect() may
//   run concurrently with them. References returned by the *Family helpers and by Family::Add
//   stay valid for the registry's lifetime; hot paths look a child up once and keep it.
// - The *Family helpers are get-or-create (the registry merges a second registration of the same
//   name) and enforce tidal's conventions before registering: counters end in `_total`,
//   histograms name their base unit (`_seconds`, `_bytes`, `_tokens`, ...), help is not
//   empty. Violations are programming errors: std::invalid_argument naming the metric.
// - ProcessRegistry() is the registry of this process: a worker's roles record into it and the
//   worker ships Collect() to the controller (FamiliesToJson); the controller labels each
//   worker's families with device/role/run and serves them next to its own (MergeFamilies +
//   RenderText). Nothing here blocks on I/O.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>

#include "absl/status/statusor.h"

namespace tidal {

using MetricLabelMap = std::map<std::string, std::string>;  // == prometheus::Labels

// The process-wide registry (leaked: metrics may be bumped during exit).
prometheus::Registry& ProcessRegistry();

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& r, const std::string& name,
                                                       const std::string& help);
prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& r, const std::string& name,
                                                   const std::string& help);
prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& r,
                                                           const std::string& name,
                                                           const std::string& help);
prometheus::Family<prometheus::Summary>& SummaryFamily(prometheus::Registry& r, const std::string& name,
                                                       const std::string& help);

// Bucket presets. LatencyBuckets: 1 ms .. ~33 s (powers of two); ByteBuckets: 1 KiB .. 16 GiB
// (powers of four); TokenBuckets: 1 .. 65536 (powers of two).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
std::vector<double> LatencyBuckets();
std::vector<double> ByteBuckets();
std::vector<double> TokenBuckets();
// The buckets a histogram name implies by its unit suffix (_seconds, _bytes, else tokens).
std::vector<double> BucketsForName(const std::string& name);
// Summary quantiles (median and p90 over a 60 s window).
const prometheus::Summary::Quantiles& DefaultQuantiles();

// Throws std::invalid_argument when `name` breaks the conventions for `type`.
void CheckMetricConvention(const std::string& name, prometheus::MetricType type, const std::string& help);

// ---- exposition

// Adds `labels` to every sample of `families`; a label a sample already has keeps its value.
void AddLabels(std::vector<prometheus::MetricFamily>* families, const MetricLabelMap& labels);
// One family per name, samples concatenated in order; a later family whose type differs from the
// first of its name is dropped (and counted in the return value's second field).
std::pair<std::vector<prometheus::MetricFamily>, int> MergeFamilies(
    std::vector<prometheus::MetricFamily> families);
// Prometheus text exposition format 0.0.4 (prometheus-cpp's TextSerializer).
std::string RenderText(const std::vector<prometheus::MetricFamily>& families);
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// ---- control-plane codec (a worker's Collect() -> the controller)
nlohmann::json FamiliesToJson(const std::vector<prometheus::MetricFamily>& families);
absl::StatusOr<std::vector<prometheus::MetricFamily>> FamiliesFromJson(const nlohmann::json& j);

// ---- standard families

// tidal_build_info{version,torch,cuda} 1.
void RecordBuildInfo(prometheus::Registry& r);
// process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
// process_open_fds, process_start_time_seconds of this process (from /proc/self) in
// ProcessRegistry(). Call before collecting it; thread-safe.
void UpdateProcessMetrics();

}  // namespace tidal
