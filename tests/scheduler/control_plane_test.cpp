#include "scheduler/control_plane.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "tests/core/temp_dir.h"

namespace tidal::scheduler {
namespace {

Recipe Base(const std::string& run_dir) {
  Recipe r = DefaultRecipe();
  r.name = "cp";
  r.run_dir = run_dir;
  return r;
}

mode_t Mode(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 ? (st.st_mode & 0777) : 0;
}

TEST(ControlPlaneTest, LoopbackDefaultHasNoCurveAndNoSecrets) {
  testing_util::TempDir dir;
  absl::StatusOr<ControlPlaneSetup> cp = PrepareControlPlane(Base(dir.path()), dir.path());
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(cp->router.endpoint, "tcp://127.0.0.1:0");
  EXPECT_FALSE(cp->router.curve.has_value());
  EXPECT_TRUE(cp->worker_credentials.empty());
  EXPECT_TRUE(cp->http_token.empty());
  EXPECT_EQ(Mode(dir.path() + "/secrets"), 0u);  // not created
}

TEST(ControlPlaneTest, OffLoopbackTurnsOnCurveAndWritesPrivateWorkerCredentials) {
  testing_util::TempDir dir;
  Recipe r = Base(dir.path());
  r.control.bind = "0.0.0.0";
  r.control.port = 0;
  r.metrics.bind = "0.0.0.0";
  r.metrics.port = 9400;
  absl::StatusOr<ControlPlaneSetup> cp = PrepareControlPlane(r, dir.path());
  ASSERT_TRUE(cp.ok()) << cp.status();
  ASSERT_TRUE(cp->router.curve.has_value());
  EXPECT_EQ(cp->router.curve->client_keys.size(), 1u);
  EXPECT_EQ(Mode(dir.path() + "/secrets"), 0700u);
  EXPECT_EQ(Mode(cp->worker_credentials), 0600u);
  absl::StatusOr<RunCredentials> w = RunCredentials::Load(cp->worker_credentials);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->server.secret_key.empty());
  EXPECT_EQ(w->server.public_key, cp->router.curve->public_key);
  EXPECT_EQ(cp->http_token.size(), 64u);  // metrics off loopback: a bearer token
  EXPECT_EQ(ReadHttpToken(dir.path()), cp->http_token);
  EXPECT_EQ(Mode(dir.path() + "/secrets/http_token"), 0600u);
  // The router binds for real, and only with the keys.
  RouterOptions ro = cp->router;
  absl::StatusOr<std::unique_ptr<Router>> router = Router::Bind(ro);
  ASSERT_TRUE(router.ok()) << router.status();
  absl::StatusOr<std::string> dial = AdvertisedEndpoint(r, (*router)->endpoint());
  ASSERT_TRUE(dial.ok()) << dial.status();
  EXPECT_EQ(dial->find("tcp://0.0.0.0"), std::string::npos) << *dial;  // a dialable address
}

TEST(ControlPlaneTest, AdvertisedEndpoint) {
  Recipe r = Base("/tmp/x");
  EXPECT_EQ(*AdvertisedEndpoint(r, "tcp://127.0.0.1:4000"), "tcp://127.0.0.1:4000");
  r.control.bind = "10.1.2.3";
  EXPECT_EQ(*AdvertisedEndpoint(r, "tcp://10.1.2.3:4000"), "tcp://10.1.2.3:4000");
  r.control.bind = "lo";  // an interface name: its address
  EXPECT_EQ(*AdvertisedEndpoint(r, "tcp://127.0.0.1:4000"), "tcp://127.0.0.1:4000");
  r.control.advertise = "ctl.cluster";
  EXPECT_EQ(*AdvertisedEndpoint(r, "tcp://0.0.0.0:4000"), "tcp://ctl.cluster:4000");
}

TEST(ControlPlaneTest, ExternalLaunchNeedsSuppliedCredentials) {
  testing_util::TempDir dir;
  Recipe r = Base(dir.path());
  r.launch = LaunchKind::kExternal;
  r.control.bind = "0.0.0.0";
  absl::StatusOr<ControlPlaneSetup> cp = PrepareControlPlane(r, dir.path());
  EXPECT_EQ(cp.status().code(), absl::StatusCode::kInvalidArgument);
  // Supplied: the run secret makes derived tokens acceptable.
  absl::StatusOr<RunCredentials> creds = RunCredentials::Generate();
  ASSERT_TRUE(creds.ok());
  r.control.credentials = dir.path() + "/controller.json";
  ASSERT_TRUE(creds->Save(r.control.credentials, RunCredentials::Scope::kController).ok());
  cp = PrepareControlPlane(r, dir.path());
  ASSERT_TRUE(cp.ok()) << cp.status();
  absl::StatusOr<std::string> tok = DeriveToken(creds->secret, 1);
  ASSERT_TRUE(tok.ok());
  EXPECT_TRUE(cp->auth->Check(1, *tok).ok());
  // A worker's copy (no server secret key) cannot run a controller.
  ASSERT_TRUE(creds->Save(r.control.credentials, RunCredentials::Scope::kWorkerDerive).ok());
  EXPECT_FALSE(PrepareControlPlane(r, dir.path()).ok());
}

TEST(ControlPlaneTest, LaunchedWorkersGetMintedTokensOnly) {
  testing_util::TempDir dir;
  absl::StatusOr<ControlPlaneSetup> cp = PrepareControlPlane(Base(dir.path()), dir.path());
  ASSERT_TRUE(cp.ok());
  absl::StatusOr<RunCredentials> creds = RunCredentials::Generate();
  ASSERT_TRUE(creds.ok());
  EXPECT_FALSE(cp->auth->Check(0, *DeriveToken(creds->secret, 0)).ok());
  EXPECT_TRUE(cp->auth->Check(0, cp->auth->Issue(0)).ok());
}

}  // namespace
}  // namespace tidal::scheduler
