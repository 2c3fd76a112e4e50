// The controller's side of scale-out: how the control socket is bound and secured, what workers
// are told to dial, and which launcher starts them (docs/scale-out.md).
//
// PrepareControlPlane(recipe, run_dir), called once before binding:
//  - `control.bind` (+ `control.port`) -> the ROUTER endpoint. CURVE is on when the bind address
//    is not loopback (or `control.curve: on`): keys come from `control.credentials` or are made
//    fresh (RunCredentials::Generate); the workers' copy (no server secret key) is written to
//    <run_dir>/secrets/worker.json (0600, directory 0700) and its path handed to every launched
//    worker.
//  - WorkerAuth accepts derived tokens (those made from the run secret) only for
//    `launch: external`; launched workers get minted one-time tokens.
//  - HTTP listeners (metrics, OpenAI endpoint) bound off loopback need a bearer token: made per
//    run and written to <run_dir>/secrets/http_token (0600), which the workers read too.
// AdvertisedEndpoint(recipe, bound) is what workers dial: `control.advertise` if set, else the
// bound address, with 0.0.0.0 / an interface name replaced by that interface's (or the first
// non-loopback) IPv4 address. WriteControlInfo writes <run_dir>/control.json (endpoint, curve,
// server public key, launcher) for tools and hand-started workers.
// MakeLauncher picks the Launcher for `launch` (local; slurm, which needs an allocation;
// external).
//
// Threads: call from the controller's thread only; plain functions.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/messaging.h"
#include "core/recipe.h"
#include "scheduler/launcher.h"
#include "scheduler/worker_auth.h"

namespace tidal::scheduler {

struct ControlPlaneSetup {
  RouterOptions router;                    // endpoint + CURVE keys (heartbeats left to the caller)
  std::optional<RunCredentials> credentials;  // set when CURVE is on
  std::string worker_credentials;          // path of the workers' credentials file ("" = none)
  std::string http_token;                  // "" when every HTTP listener stays on loopback
  std::unique_ptr<WorkerAuth> auth;
};

absl::StatusOr<ControlPlaneSetup> PrepareControlPlane(const Recipe& recipe, const std::string& run_dir);
absl::StatusOr<std::string> AdvertisedEndpoint(const Recipe& recipe, const std::string& bound_endpoint);
absl::Status WriteControlInfo(const std::string& run_dir, const std::string& endpoint, const ControlPlaneSetup& setup,
                              std::string_view launcher);
absl::StatusOr<std::unique_ptr<Launcher>> MakeLauncher(const Recipe& recipe, LaunchOptions options,
                                                       const std::vector<int>& train_group);

// Reads <run_dir>/secrets/http_token ("" when the file does not exist).
std::string ReadHttpToken(const std::string& run_dir);

}  // namespace tidal::scheduler
