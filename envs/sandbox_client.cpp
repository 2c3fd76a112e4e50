#include "envs/sandbox_client.h"

#include "core/httplib.h"

#include <cmath>

namespace tidal::envs {

using nlohmann::json;

absl::StatusOr<SandboxResult> SandboxClient::Run(const SandboxRequest& request) const {
  httplib::Client client(url_);
  if (!client.is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat("sandbox url '", url_, "' is not valid"));
  }
  client.set_connection_timeout(5, 0);
  // The service may queue the call, then runs it for up to timeout_s.
  const auto wait_s = static_cast<time_t>(std::ceil(request.timeout_s)) + 120;
  client.set_read_timeout(wait_s, 0);
  client.set_write_timeout(30, 0);
  const json body = {{"language", request.language}, {"code", request.code},
                     {"stdin", request.stdin_data},  {"timeout_s", request.timeout_s},
                     {"memory_mb", request.memory_mb}};
  auto res = client.Post("/run", body.dump(-1, ' ', false, json::error_handler_t::replace),
                         "application/json");
  if (!res) {
    return absl::UnavailableError(absl::StrCat("sandbox at ", url_, " unreachable: ",
                                               httplib::to_string(res.error())));
  }
  json reply = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object()) {
    return absl::InternalError(absl::StrCat("sandbox at ", url_, ": HTTP ", res->status,
                                            " with a body that is not JSON"));
  }
  if (res->status != 200) {
    const std::string msg =
        absl::StrCat("sandbox at ", url_, ": HTTP ", res->status, ": ", reply.value("error", ""));
    if (res->status == 400) return absl::InvalidArgumentError(msg);
    if (res->status == 503) return absl::UnavailableError(msg);
    return absl::InternalError(msg);
  }
  SandboxResult r;
  r.stdout_text = reply.value("stdout", "");
  r.stderr_text = reply.value("stderr", "");
  r.exit_code = reply.value("exit_code", -1);
  r.signal = reply.value("signal", 0);
  r.time_s = reply.value("time_s", 0.0);
  r.timed_out = reply.value("timed_out", false);
  r.truncated = reply.value("truncated", false);
  r.error = reply.value("error", "");
  return r;
}

}  // namespace tidal::envs
