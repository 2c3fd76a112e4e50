#include "core/metrics_server.h"

#include "core/httplib.h"
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/http_auth.h"
#include "core/logging.h"
#include "core/metrics.h"

namespace tidal {

class MetricsServer::Impl {
 public:
  Impl(std::function<std::string()> render, MetricsServerOptions options)
      : render_(std::move(render)), options_(std::move(options)) {}
  ~Impl() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  absl::Status Start() {
    RequireBearerToken(server_, options_.bearer_token);
    const int threads = std::max(2, options_.threads);
    server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    const time_t sec = options_.io_timeout_ms / 1000;
    const time_t usec = (options_.io_timeout_ms % 1000) * 1000;
    server_.set_read_timeout(sec, usec);
    server_.set_write_timeout(sec, usec);
    server_.set_keep_alive_timeout(std::max<time_t>(1, sec));
    // httplib's default also sets SO_REUSEPORT, which would let a second run bind the same port
    // and split the scrapes between two processes; SO_REUSEADDR alone keeps restarts quick.
    server_.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(render_(), kPrometheusContentType);
    });
    bool has_index = false;
    for (const HttpRoute& r : options_.routes) {
      has_index |= r.path == "/";
      auto handler = r.handler;
      server_.Get(r.path, [handler](const httplib::Request&, httplib::Response& res) {
        HttpReply reply = handler();
        res.status = reply.status;
        res.set_content(std::move(reply.body), reply.content_type);
        res.set_header("Cache-Control", "no-store");
      });
    }
    if (!has_index) {
      server_.Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("tidal metrics: GET /metrics\n", "text/plain");
      });
    }
    const std::string& host = options_.host;
    if (options_.port == 0) {
      port_ = server_.bind_to_any_port(host);
    } else {
      port_ = server_.bind_to_port(host, options_.port) ? options_.port : -1;
    }
    if (port_ <= 0) {
      return absl::UnavailableError(
          absl::StrCat("metrics server: cannot bind ", host, ":", options_.port,
                       options_.port == 0 ? " (any free port)" : "", " (address in use or not local?)"));
    }
    thread_ = std::thread([this] {
      if (!server_.listen_after_bind()) {
        TIDAL_LOG(ERROR) << "metrics server on " << options_.host << ":" << port_ << " stopped with an error";
      }
    });
    // stop() is a no-op until the listener runs, so a server destroyed right after Start() would
    // otherwise leave the thread listening forever.
    for (int i = 0; i < 5000 && !server_.is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return absl::OkStatus();
  }

  int port() const { return port_; }
  const std::string& host() const { return options_.host; }

 private:
  const std::function<std::string()> render_;
  const MetricsServerOptions options_;
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(std::function<std::string()> render,
                                                                   MetricsServerOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server: port ", options.port, " is out of range 0-65535"));
  }
  auto impl = std::make_unique<Impl>(std::move(render), std::move(options));
  absl::Status s = impl->Start();
  if (!s.ok()) return s;
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsServer::~MetricsServer() = default;
int MetricsServer::port() const { return impl_->port(); }
std::string MetricsServer::url() const { return absl::StrCat(base_url(), "metrics"); }
std::string MetricsServer::base_url() const {
  // A wildcard bind is reachable on loopback.
  std::string host = impl_->host() == "0.0.0.0" || impl_->host().empty() ? "127.0.0.1" : impl_->host();
  return absl::StrCat("http://", host, ":", impl_->port(), "/");
}

}  // namespace tidal
