#include "core/http_auth.h"

#include <gtest/gtest.h>
#include "core/httplib.h"

#include "core/metrics_server.h"

namespace tidal {
namespace {

TEST(HttpAuthTest, MetricsServerWithATokenRefusesEveryOtherRequest) {
  MetricsServerOptions o;
  o.bearer_token = "s3cret-token";
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start([] { return std::string("tidal_test_total 1\n"); }, o);
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  auto none = client.Get("/metrics");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->body.find("tidal_test_total"), std::string::npos);
  auto wrong = client.Get("/metrics", {{"Authorization", "Bearer s3cret-tokem"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto basic = client.Get("/metrics", {{"Authorization", "Basic s3cret-token"}});
  ASSERT_TRUE(basic);
  EXPECT_EQ(basic->status, 401);
  auto good = client.Get("/metrics", {{"Authorization", "Bearer s3cret-token"}});
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200);
  EXPECT_NE(good->body.find("tidal_test_total"), std::string::npos);
}

TEST(HttpAuthTest, NoTokenMeansOpen) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start([] { return std::string("tidal_test_total 1\n"); }, {});
  ASSERT_TRUE(server.ok());
  httplib::Client client("127.0.0.1", (*server)->port());
  auto r = client.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

}  // namespace
}  // namespace tidal
