// The controller's metrics: a façade over core/metrics.h (prometheus-cpp) that sets a labelled
// value in one call, keeps the latest metrics each worker reported, and serves all of it on
// /metrics with `run`, `role` and `device` labels (plus any extra routes, e.g. the dashboard).
//
// Contract:
// - Set/Add/SetTotal/Observe/Summarize and Ingest are called by the controller's event-loop
//   thread; the HTTP server's threads call Render() concurrently (prometheus-cpp's metrics are
//   thread-safe; the worker snapshots sit behind a mutex).
// - Names follow Prometheus conventions (core/metrics.h checks them): `_total` names are counters
//   (Add adds a delta; SetTotal takes a running total and adds what is new), histograms name
//   their unit. A name's label names are fixed by its first use. Every name has a
//   help line in metrics_sink.cpp (docs/observability.md lists them).
// - Render(): the controller's own families and this process's ProcessRegistry() (labelled
//   role="controller"), then each worker's latest snapshot (labelled device=<slot>, role=<the
//   device's home tag>), all with run=<recipe name>, merged into one family per name.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/metrics.h"
#include "core/metrics_server.h"
#include "core/status.h"

namespace tidal::scheduler {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class MetricsSink {
 public:
  // Serves GET /metrics (and `routes`) on bind:port (port 0 picks a free one; see url()).
  static absl::StatusOr<std::unique_ptr<MetricsSink>> Serve(const std::string& run, const std::string& bind,
                                                            int port, std::vector<HttpRoute> routes = {});
  // Keeps values without serving them.
  static std::unique_ptr<MetricsSink> Local(const std::string& run);
  ~MetricsSink();

  void Set(const std::string& name, const MetricLabels& labels, double value);
  void Add(const std::string& name, const MetricLabels& labels, double delta);
  void SetTotal(const std::string& name, const MetricLabels& labels, double total);
  void Observe(const std::string& name, const MetricLabels& labels, double value);
  void Summarize(const std::string& name, const MetricLabels& labels, double value);

  // A worker's Collect() (core/metrics.h FamiliesToJson), replacing its previous snapshot.
  absl::Status Ingest(const std::string& device, const std::string& role, const nlohmann::json& families);

  std::string Render() const;
  std::string url() const { return server_ ? server_->url() : ""; }
  std::string base_url() const { return server_ ? server_->base_url() : ""; }
  int port() const { return server_ ? server_->port() : -1; }

 private:
  explicit MetricsSink(std::string run) : run_(std::move(run)) {}

  const std::string run_;
  prometheus::Registry registry_;
  std::unique_ptr<MetricsServer> server_;
  mutable std::mutex mu_;
  std::map<std::string, std::pair<std::string, std::vector<prometheus::MetricFamily>>> workers_;  // device -> (role, families)
  mutable int dropped_families_ = 0;  // type clashes across processes (logged once)
};

}  // namespace tidal::scheduler
