#include "core/curve_auth.h"

#include <zmq.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "absl/strings/str_cat.h"
#include "core/logging.h"

namespace tidal {

zmq::context_t& MessagingContext();  // core/messaging.cpp

namespace {

std::string Z85(const std::string& raw32) {
  char out[41];
  if (raw32.size() != 32 || zmq_z85_encode(out, reinterpret_cast<const uint8_t*>(raw32.data()), 32) == nullptr) {
    return "<bad key>";
  }
  return out;
}

// The ZAP handler: a REP socket on inproc://zeromq.zap.01 of the messaging context (RFC 27).
class ZapHandler {
 public:
  static ZapHandler& Get() {
    static auto* h = new ZapHandler();  // leaked with the context it serves
    return *h;
  }

  absl::Status Start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return absl::OkStatus();
    try {
      socket_ = zmq::socket_t(MessagingContext(), zmq::socket_type::rep);
      socket_.bind("inproc://zeromq.zap.01");
    } catch (const zmq::error_t& e) {
      return absl::InternalError(absl::StrCat("ZAP handler: ", e.what()));
    }
    started_ = true;
    std::thread([this] { Run(); }).detach();
    return absl::OkStatus();
  }

  void Set(const std::string& domain, std::set<std::string> keys) {
    std::lock_guard<std::mutex> lock(mu_);
    domains_[domain] = std::move(keys);
  }

  std::atomic<int64_t> refusals{0};

 private:
  void Run() {
    while (true) {
      std::vector<zmq::message_t> req;
      try {
        zmq::recv_result_t r = zmq::recv_multipart(socket_, std::back_inserter(req));
        if (!r) continue;
      } catch (const zmq::error_t&) {
        return;  // context terminated
      }
      auto frame = [&](size_t i) { return i < req.size() ? req[i].to_string() : std::string(); };
      const std::string version = frame(0), request_id = frame(1), domain = frame(2),
                        address = frame(3), mechanism = frame(5), key = frame(6);
      std::string code = "400", text;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = domains_.find(domain);
        if (version != "1.0") {
          text = "unsupported ZAP version";
        } else if (mechanism != "CURVE") {
          text = "CURVE required";
        } else if (it == domains_.end()) {
          text = "unknown domain";
        } else if (it->second.count(key) == 0) {
          text = "client key not admitted";
        } else {
          code = "200";
          text = "OK";
        }
        if (code != "200") {
          refusals.fetch_add(1);
          int64_t n = ++refused_[domain + "|" + key + "|" + address];
          if (n <= 3 || n % 100 == 0) {
            TIDAL_LOG(WARN) << "control plane: refused a " << mechanism << " connection from " << address
                            << " (client key " << (mechanism == "CURVE" ? Z85(key) : "-") << "): " << text
                            << (n > 1 ? absl::StrCat(" [", n, " times]") : "");
          }
        }
      }
      std::vector<zmq::const_buffer> rep = {zmq::buffer(std::string_view("1.0")), zmq::buffer(request_id),
                                            zmq::buffer(code), zmq::buffer(text),
                                            zmq::buffer(std::string_view("")), zmq::buffer(std::string_view(""))};
      try {
        zmq::send_multipart(socket_, rep);
      } catch (const zmq::error_t&) {
        return;
      }
    }
  }

  std::mutex mu_;
  bool started_ = false;
  zmq::socket_t socket_;
  std::map<std::string, std::set<std::string>> domains_;  // domain -> admitted raw 32-byte keys
  std::map<std::string, int64_t> refused_;
};

}  // namespace

bool IsLoopbackHost(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

bool IsLoopbackEndpoint(std::string_view endpoint) {
  if (endpoint.starts_with("inproc://") || endpoint.starts_with("ipc://")) return true;
  if (!endpoint.starts_with("tcp://")) return false;
  std::string_view rest = endpoint.substr(6);
  // "tcp://src;dst" binds a source address: the destination is what matters.
  if (size_t semi = rest.find(';'); semi != std::string_view::npos) rest = rest.substr(semi + 1);
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return false;
  return IsLoopbackHost(rest.substr(0, colon));
}

absl::Status AllowCurveClients(const std::string& domain, const std::vector<std::string>& z85_keys) {
  if (!zmq_has("curve")) return absl::FailedPreconditionError("this libzmq is built without CURVE");
  std::set<std::string> raw;
  for (const std::string& k : z85_keys) {
    if (k.size() != 40) return absl::InvalidArgumentError("CURVE client key: need 40 Z85 characters");
    uint8_t buf[32];
    if (zmq_z85_decode(buf, k.c_str()) == nullptr) return absl::InvalidArgumentError("CURVE client key: not Z85");
    raw.insert(std::string(reinterpret_cast<char*>(buf), 32));
  }
  TIDAL_RETURN_IF_ERROR(ZapHandler::Get().Start());
  ZapHandler::Get().Set(domain, std::move(raw));
  return absl::OkStatus();
}

int64_t CurveRefusals() { return ZapHandler::Get().refusals.load(); }

}  // namespace tidal
