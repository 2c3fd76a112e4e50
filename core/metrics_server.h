// HTTP endpoint for Prometheus: GET /metrics returns a registry's Render() output.
//
// Contract: Start() binds before it returns (so the port is known and a bind failure is an error
// here, not in a thread) and serves on its own threads (one listener plus a small worker pool)
// until the server is destroyed; the destructor stops the listener and joins it. The registry
// must outlive the server. Binds 127.0.0.1 unless told otherwise; port 0 picks a free port.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/metrics.h"

namespace tidal {

struct MetricsServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: ephemeral, see MetricsServer::port()
  std::string bearer_token;  // non-empty: every request needs it (core/http_auth.h)
};

class MetricsServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const MetricsRegistry& registry,
                                                              MetricsServerOptions options = {});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const;
  // e.g. "http://127.0.0.1:40123/metrics"
  std::string url() const;

 private:
  class Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal
