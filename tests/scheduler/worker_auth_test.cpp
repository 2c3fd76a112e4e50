#include "scheduler/worker_auth.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "tests/core/temp_dir.h"

namespace tidal::scheduler {
namespace {

TEST(WorkerAuthTest, MintedTokenIsAcceptedOnceForItsRankOnly) {
  WorkerAuth auth("");
  std::string t0 = auth.Issue(0);
  std::string t1 = auth.Issue(1);
  EXPECT_EQ(auth.Check(0, t1).code(), absl::StatusCode::kPermissionDenied);  // another rank's token
  EXPECT_TRUE(auth.Check(0, t0).ok());
  absl::Status replay = auth.Check(0, t0);
  EXPECT_EQ(replay.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(replay.message().find("already used"), std::string::npos) << replay;
  EXPECT_TRUE(auth.Check(1, t1).ok());
  EXPECT_EQ(auth.accepted(), 2);
  EXPECT_EQ(auth.refused(), 2);
}

TEST(WorkerAuthTest, RefusesMissingForgedAndRevokedTokens) {
  WorkerAuth auth("");
  EXPECT_EQ(auth.Check(0, "").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth.Check(0, "garbage").code(), absl::StatusCode::kPermissionDenied);
  std::string old = auth.Issue(2);
  std::string forged = old;
  forged.back() = forged.back() == '0' ? '1' : '0';
  EXPECT_EQ(auth.Check(2, forged).code(), absl::StatusCode::kPermissionDenied);
  std::string fresh = auth.Issue(2);  // a restart: the first launch's token is revoked
  absl::Status late = auth.Check(2, old);
  EXPECT_EQ(late.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(late.message().find("revoked"), std::string::npos) << late;
  EXPECT_TRUE(auth.Check(2, fresh).ok());
}

TEST(WorkerAuthTest, DerivedTokensNeedTheRunSecretAndAreOneTime) {
  absl::StatusOr<RunCredentials> creds = RunCredentials::Generate();
  ASSERT_TRUE(creds.ok()) << creds.status();
  absl::StatusOr<RunCredentials> other = RunCredentials::Generate();
  ASSERT_TRUE(other.ok());
  WorkerAuth auth(creds->secret);
  absl::StatusOr<std::string> tok = DeriveToken(creds->secret, 3);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(auth.Check(4, *tok).code(), absl::StatusCode::kPermissionDenied);  // wrong rank
  EXPECT_TRUE(auth.Check(3, *tok).ok());
  EXPECT_EQ(auth.Check(3, *tok).code(), absl::StatusCode::kPermissionDenied);  // replay
  absl::StatusOr<std::string> foreign = DeriveToken(other->secret, 3);
  ASSERT_TRUE(foreign.ok());
  absl::Status s = auth.Check(3, *foreign);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("MAC"), std::string::npos) << s;
  // A run without a secret accepts no derived tokens at all.
  WorkerAuth minted_only("");
  absl::StatusOr<std::string> tok2 = DeriveToken(creds->secret, 0);
  ASSERT_TRUE(tok2.ok());
  EXPECT_EQ(minted_only.Check(0, *tok2).code(), absl::StatusCode::kPermissionDenied);
}

TEST(WorkerAuthTest, CredentialFilesArePrivateAndScoped) {
  testing_util::TempDir dir;
  absl::StatusOr<RunCredentials> creds = RunCredentials::Generate();
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_EQ(creds->server.public_key.size(), 40u);
  EXPECT_EQ(creds->secret.size(), 64u);
  const std::string ctl = dir.path() + "/controller.json", wrk = dir.path() + "/worker.json";
  ASSERT_TRUE(creds->Save(ctl, RunCredentials::Scope::kController).ok());
  ASSERT_TRUE(creds->Save(wrk, RunCredentials::Scope::kWorker).ok());
  struct stat st;
  ASSERT_EQ(stat(wrk.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<RunCredentials> back = RunCredentials::Load(ctl);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->server.secret_key, creds->server.secret_key);
  EXPECT_EQ(back->secret, creds->secret);
  absl::StatusOr<RunCredentials> w = RunCredentials::Load(wrk);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->server.secret_key.empty());  // workers never hold the server's secret key
  EXPECT_TRUE(w->secret.empty());
  EXPECT_EQ(w->client.secret_key, creds->client.secret_key);
  EXPECT_EQ(RunCredentials::FromJson("{\"server_public\": \"short\"}", "x.json").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tidal::scheduler
