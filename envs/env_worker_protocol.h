// Wire format between an IsolatedBackend (host) and its tidal-env-worker process, over one
// AF_UNIX stream socket (fd 3 in the worker).
//
// A message is a list of byte-string fields: [u32 field count] then per field [u32 length]
// [bytes], native byte order (both ends are the same binary build on the same machine). Raw
// bytes, not JSON, so whatever a plugin returns (even invalid UTF-8) reaches the host's
// validation unchanged.
//   request: op ("create" | "reset" | "step" | "score"), then its arguments:
//            create plugin, config_json | reset seed(decimal), options_json | step turn |
//            score hidden_json, response
//   reply:   absl status code (decimal; "0" = ok), then the plugin's output or the error text.
// Strictly one request then one reply; the host never pipelines.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/status.h"

namespace tidal::envs {

// Writes a whole message; EPIPE and other errors come back as kUnavailable.
absl::Status WriteMessage(int fd, const std::vector<std::string>& fields);

// Reads a whole message. With a deadline, kDeadlineExceeded if it has not fully arrived by
// then; kUnavailable on EOF (peer gone) or a malformed frame.
absl::StatusOr<std::vector<std::string>> ReadMessage(
    int fd, std::chrono::steady_clock::time_point deadline =
                std::chrono::steady_clock::time_point::max());

}  // namespace tidal::envs
