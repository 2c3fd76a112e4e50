// ZeroMQ CURVE for the control plane: key types, the loopback test that decides where CURVE is
// mandatory, and the process's ZAP handler that admits only known client keys.
//
// Contract:
// - A CURVE server socket (core/messaging.h Router with RouterOptions::curve) encrypts every
//   connection and asks the ZAP handler whether to admit the client's public key. The handler is
//   one thread per process, started by the first AllowCurveClients() call and never stopped (it
//   serves the process-wide ZeroMQ context, which is leaked on purpose, see messaging.cpp).
// - AllowCurveClients(domain, keys) sets the admitted client keys of one ZAP domain (each Router
//   uses its own, never reused, domain). Thread-safe.
// - Every refusal is logged at WARN with the client's key and address (the first few per
//   (domain, key, address), then every 100th, so a client that keeps reconnecting cannot flood
//   the log) and counted: CurveRefusals().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tidal {

// Z85-encoded (40-character) CURVE keys.
struct CurveServerKeys {
  std::string public_key;
  std::string secret_key;
  std::vector<std::string> client_keys;  // public keys admitted by the ZAP handler
};

struct CurveClientKeys {
  std::string server_key;  // the server's public key
  std::string public_key;
  std::string secret_key;
};

// True for inproc://, ipc:// and tcp:// endpoints on 127.0.0.0/8, ::1 or "localhost" (traffic that
// never leaves the machine); false for anything else (0.0.0.0, *, interface names, other hosts).
bool IsLoopbackEndpoint(std::string_view endpoint);
// The same test for a bare host/address ("127.0.0.1", "0.0.0.0", "eth0", "::1").
bool IsLoopbackHost(std::string_view host);

absl::Status AllowCurveClients(const std::string& domain, const std::vector<std::string>& z85_keys);
int64_t CurveRefusals();

}  // namespace tidal
