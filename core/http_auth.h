// Bearer-token check for tidal's HTTP listeners (Prometheus /metrics, the OpenAI-compatible
// endpoint). They bind loopback by default; a recipe that binds them elsewhere gets a per-run
// token (scheduler/control_plane.h) and every request must carry `Authorization: Bearer <token>`.
//
// Contract: RequireBearerToken installs a pre-routing handler on `server` before it listens; a
// request without the exact token gets 401 with a JSON error and never reaches a route. The
// comparison takes the same time wherever the strings differ. An empty token installs nothing.
#pragma once

#include <string>

namespace httplib {
class Server;
}

namespace tidal {

void RequireBearerToken(httplib::Server& server, std::string token);

}  // namespace tidal
