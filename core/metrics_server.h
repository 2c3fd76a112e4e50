// HTTP endpoint for Prometheus and the run dashboard: GET /metrics returns the text exposition a
// render callback produces; extra GET routes (the dashboard's page, script and data) are served by
// their own callbacks.
//
// Contract: Start() binds before it returns (so the port is known and a bind failure is an error
// here, not in a thread) and serves on its own threads (one listener plus a pool of
// `options.threads` connection workers) until the server is destroyed; the destructor stops the
// listener and joins it. Callbacks run on the pool's threads, concurrently with each other: they
// must be thread-safe and must outlive the server. Binds 127.0.0.1 unless told otherwise; port 0
// picks a free port.
// Slow clients: a connection occupies a pool thread while it is open, so each connection's reads
// and writes time out after `io_timeout_ms` and idle keep-alive connections are closed after the
// same time; the pool is sized above what a scraper plus a few browser tabs open at once.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tidal {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpRoute {
  std::string path;  // exact path, e.g. "/api/run.json"
  std::function<HttpReply()> handler;
};

struct MetricsServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port, see MetricsServer::port()
  int threads = 16;
  int io_timeout_ms = 2000;
  std::vector<HttpRoute> routes;  // besides /metrics; "/" defaults to a plain index
};

class MetricsServer {
 public:
  // `render` returns the exposition (core/metrics.h RenderText) for each GET /metrics.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(std::function<std::string()> render,
                                                              MetricsServerOptions options = {});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const;
  // e.g. "http://127.0.0.1:40123/metrics"
  std::string url() const;
  // e.g. "http://127.0.0.1:40123/"
  std::string base_url() const;

 private:
  class Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal
