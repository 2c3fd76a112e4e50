#include "core/http_auth.h"

#include "core/httplib.h"

namespace tidal {
namespace {

bool SameToken(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

void RequireBearerToken(httplib::Server& server, std::string token) {
  if (token.empty()) return;
  server.set_pre_routing_handler([token = std::move(token)](const httplib::Request& req, httplib::Response& res) {
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.size() > prefix.size() && header.compare(0, prefix.size(), prefix) == 0 &&
        SameToken(header.substr(prefix.size()), token)) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(R"({"error":{"message":"missing or wrong bearer token","type":"unauthorized"}})",
                    "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });
}

}  // namespace tidal
