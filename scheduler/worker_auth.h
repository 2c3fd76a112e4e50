// Credentials of one run, and the one check every worker registration goes through.
//
// Two layers, both owned here so every launcher (local, Slurm, Kubernetes) uses the same code:
//  1. Transport: ZeroMQ CURVE. A run has a server key pair (the controller's ROUTER) and one
//     client key pair shared by its workers; the controller's ZAP handler (core/curve_auth.h)
//     admits only that client key. CURVE is on for every non-loopback control socket
//     (core/messaging.h refuses to bind one without it).
//  2. Registration: a worker's Register carries a one-time token for the rank it claims
//     (Register.info["token"]). Tokens come in two forms:
//       t1.<rank>.<64 hex>            minted by the controller (WorkerAuth::Issue) for one launch
//                                     and handed to that process only (env TIDAL_WORKER_TOKEN);
//                                     used by the local and Slurm launchers
//       d1.<rank>.<32 hex nonce>.<64 hex HMAC-SHA256(secret, "tidal-register-v1|rank|nonce")>
//                                     derived by a worker that holds the run secret (Kubernetes
//                                     pods, which the controller does not start: DeriveToken)
//     WorkerAuth::Check accepts a token once: a second Register with the same token (a replay)
//     is refused, as are a missing token, a token for another rank, an unknown or revoked minted
//     token and a derived token with a wrong MAC. Issuing a new token for a rank revokes the
//     rank's earlier unused ones (a restarted worker's predecessor cannot register late).
//
// Files (JSON, mode 0600, written by Save): the controller's copy holds every field; the
// workers' copy (Scope::kWorker) lacks the server secret key, and lacks the run secret unless
// derived tokens are needed (Scope::kWorkerDerive, Kubernetes).
//
// Threads: WorkerAuth is owned by the controller's event-loop thread (not thread-safe). The rest
// is plain data and free functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tidal::scheduler {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters ("" when the holder must not have it)
};

struct RunCredentials {
  std::string secret;   // 64 hex characters: the key of derived-token MACs ("" = not held)
  CurveKeyPair server;  // the controller's ROUTER
  CurveKeyPair client;  // the workers' DEALERs

  enum class Scope { kController, kWorker, kWorkerDerive };

  // Fresh random keys and secret (libsodium; CURVE keys from zmq_curve_keypair).
  static absl::StatusOr<RunCredentials> Generate();
  static absl::StatusOr<RunCredentials> Load(const std::string& path);
  // Parses what Save writes; `source` names the origin in errors.
  static absl::StatusOr<RunCredentials> FromJson(std::string_view text, const std::string& source);
  std::string ToJson(Scope scope) const;
  // Writes ToJson(scope) to `path` with mode 0600 (created with it; never world-readable).
  absl::Status Save(const std::string& path, Scope scope) const;
};

// Worker side: a derived token for `rank` with a fresh random nonce (needs `secret`).
absl::StatusOr<std::string> DeriveToken(std::string_view secret, int rank);

class WorkerAuth {
 public:
  explicit WorkerAuth(std::string secret) : secret_(std::move(secret)) {}

  // A fresh minted token for `rank`; the rank's earlier unused minted tokens are revoked.
  std::string Issue(int rank);
  // OK (and the token is spent) or PermissionDenied naming why. Never throws.
  absl::Status Check(int rank, std::string_view token);

  int64_t accepted() const { return accepted_; }
  int64_t refused() const { return refused_; }

 private:
  absl::Status CheckOnce(int rank, std::string_view token);

  std::string secret_;
  std::map<std::string, int, std::less<>> outstanding_;  // minted token -> rank
  std::map<std::string, std::string, std::less<>> spent_;  // used/revoked token -> how
  int64_t accepted_ = 0, refused_ = 0;
};

}  // namespace tidal::scheduler
