// The controller's metrics: a thin façade over core/metrics.h (its own registry, served on
// /metrics by core/metrics_server.h) that lets the controller set a labelled value in one call.
//
// Contract: Set/Add are called by the controller's event-loop thread; the HTTP server's threads
// render the registry concurrently (core/metrics.h makes that safe). A name's label names are
// fixed by its first use. Names ending in _total are counters (Add), all others gauges (Set).
// Every name has a help line in metrics_sink.cpp (docs/controller.md lists them).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/metrics.h"
#include "core/status.h"

namespace tidal {
class MetricsServer;
}

namespace tidal::scheduler {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class MetricsSink {
 public:
  // Serves GET /metrics on bind:port (port 0 picks a free one; see url()).
  // A non-empty bearer_token is required of every request (core/http_auth.h).
  static absl::StatusOr<std::unique_ptr<MetricsSink>> Serve(const std::string& bind, int port,
                                                            const std::string& bearer_token = "");
  // Keeps values without serving them.
  static std::unique_ptr<MetricsSink> Local();
  ~MetricsSink();

  void Set(const std::string& name, const MetricLabels& labels, double value);
  void Add(const std::string& name, const MetricLabels& labels, double delta);
  std::string Render() const { return registry_.Render(); }
  std::string url() const { return url_; }

 private:
  MetricsSink();
  MetricsRegistry registry_;
  std::unique_ptr<MetricsServer> server_;
  std::string url_;
};

}  // namespace tidal::scheduler
