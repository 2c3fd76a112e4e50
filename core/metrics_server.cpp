#include "core/metrics_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/http_auth.h"
#include "core/logging.h"

namespace tidal {

class MetricsServer::Impl {
 public:
  Impl(const MetricsRegistry& registry, std::string host) : registry_(registry), host_(std::move(host)) {}
  ~Impl() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  absl::Status Start(int port, const std::string& bearer_token) {
    RequireBearerToken(server_, bearer_token);
    // Scrapes are rare and cheap: two workers instead of httplib's default of one per core.
    server_.new_task_queue = [] { return new httplib::ThreadPool(2); };
    // httplib's default also sets SO_REUSEPORT, which would let a second run bind the same port
    // and split the scrapes between two processes; SO_REUSEADDR alone keeps restarts quick.
    server_.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(registry_.Render(), kPrometheusContentType);
    });
    server_.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("tidal metrics: GET /metrics\n", "text/plain");
    });
    if (port == 0) {
      port_ = server_.bind_to_any_port(host_);
    } else {
      port_ = server_.bind_to_port(host_, port) ? port : -1;
    }
    if (port_ <= 0) {
      return absl::UnavailableError(
          absl::StrCat("metrics server: cannot bind ", host_, ":", port,
                       port == 0 ? " (ephemeral)" : "", " (address in use or not local?)"));
    }
    thread_ = std::thread([this] {
      if (!server_.listen_after_bind()) {
        TIDAL_LOG(ERROR) << "metrics server on " << host_ << ":" << port_ << " stopped with an error";
      }
    });
    // stop() is a no-op until the listener runs, so a server destroyed right after Start() would
    // otherwise leave the thread listening forever.
    for (int i = 0; i < 5000 && !server_.is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    TIDAL_LOG(INFO) << "metrics at http://" << host_ << ":" << port_ << "/metrics";
    return absl::OkStatus();
  }

  int port() const { return port_; }
  const std::string& host() const { return host_; }

 private:
  const MetricsRegistry& registry_;
  const std::string host_;
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const MetricsRegistry& registry,
                                                                   MetricsServerOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server: port ", options.port, " is out of range 0-65535"));
  }
  auto impl = std::make_unique<Impl>(registry, options.host);
  absl::Status s = impl->Start(options.port, options.bearer_token);
  if (!s.ok()) return s;
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsServer::~MetricsServer() = default;
int MetricsServer::port() const { return impl_->port(); }
std::string MetricsServer::url() const {
  return absl::StrCat("http://", impl_->host(), ":", impl_->port(), "/metrics");
}

}  // namespace tidal
