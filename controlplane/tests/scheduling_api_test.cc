// The scheduling knobs through the real control plane's REST API (real HTTPS, real tokens):
// a tenant's per-class limits and credits and an agent's dispatch policy, reservation and
// admission knobs are validated with messages naming the field, stored, and pushed to the
// real data plane, which accepts them (docs/scheduling.md).
#include <gtest/gtest.h>

#include <string>

#include "daemon_fixture.h"

namespace axon::controlplane {
namespace {

using namespace daemon_it;

std::string error_of(const Http& r) {
  const json j = r.parsed();
  return j.is_object() ? j.value("error", "") : "";
}

TEST_F(ControlplaneDaemon, TenantClassLimitsAndCreditsAreValidatedStoredAndPushed) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  const auto version = [&] {
    return call("GET", "/v1/status").parsed()["dataplane"].value("table_version", std::uint64_t{0});
  };
  const std::uint64_t before = version();

  Http no_burst = call("PUT", "/v1/tenants/2", R"({"name":"bulk","interactive_rate_pps":100})");
  EXPECT_EQ(no_burst.status, 400) << no_burst.body;
  EXPECT_NE(error_of(no_burst).find("interactive_rate_pps needs interactive_burst"), std::string::npos)
      << no_burst.body;
  Http inverted = call("PUT", "/v1/tenants/2", R"({"name":"bulk","credits_max":2,"credits_min":3})");
  EXPECT_EQ(inverted.status, 400) << inverted.body;
  EXPECT_NE(error_of(inverted).find("credits_min (3) must not exceed credits_max (2)"), std::string::npos)
      << inverted.body;
  Http typo = call("PUT", "/v1/tenants/2", R"({"name":"bulk","credit_max":2})");
  EXPECT_EQ(typo.status, 400) << typo.body;
  EXPECT_NE(error_of(typo).find("credit_max"), std::string::npos) << typo.body;
  Http reader = call("PUT", "/v1/tenants/2", R"({"name":"bulk"})", &reader_token_);
  EXPECT_EQ(reader.status, 403) << reader.body;
  EXPECT_EQ(call("GET", "/v1/tenants/2").status, 404) << "nothing refused was stored";

  Http ok = call("PUT", "/v1/tenants/2",
                 R"({"name":"bulk","interactive_rate_pps":800,"interactive_burst":80,"background_rate_pps":200,)"
                 R"("background_burst":20,"credits_max":64,"credits_min":4,"credit_delay_target_us":500})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  const json stored = call("GET", "/v1/tenants/2").parsed();
  EXPECT_EQ(stored.value("interactive_rate_pps", 0), 800) << stored.dump();
  EXPECT_EQ(stored.value("background_burst", 0), 20) << stored.dump();
  EXPECT_EQ(stored.value("credits_max", 0), 64) << stored.dump();
  EXPECT_EQ(stored.value("credits_min", 0), 4) << stored.dump();
  EXPECT_EQ(stored.value("credit_delay_target_us", 0), 500) << stored.dump();
  // The data plane accepted tables carrying them (it refuses what its own checks reject).
  EXPECT_TRUE(eventually([&] { return version() > before; })) << controlplane_->log() << dataplane_->log();
  EXPECT_EQ(controlplane_->log().find("rejected tables"), std::string::npos) << controlplane_->log();
}

TEST_F(ControlplaneDaemon, AgentSchedulingKnobsAreValidatedStoredAndPushed) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  const auto version = [&] {
    return call("GET", "/v1/status").parsed()["dataplane"].value("table_version", std::uint64_t{0});
  };
  const std::string base = R"({"id":7,"tenant":1,"command":[")" AXON_ECHO_WORKER_BIN R"("],"pool":{"min":2,"max":4})";
  Http policy = call("PUT", "/v1/agents/echo", base + R"(,"dispatch":"fastest"})");
  EXPECT_EQ(policy.status, 400) << policy.body;
  EXPECT_NE(error_of(policy).find("unknown dispatch policy 'fastest'"), std::string::npos) << policy.body;
  Http reserve = call("PUT", "/v1/agents/echo", base + R"(,"reserved_interactive":5})");
  EXPECT_EQ(reserve.status, 400) << reserve.body;
  EXPECT_NE(error_of(reserve).find("reserved_interactive (5) is more than the pool's max (4)"), std::string::npos)
      << reserve.body;
  Http water = call("PUT", "/v1/agents/echo", base + R"(,"high_water":0})");
  EXPECT_EQ(water.status, 400) << water.body;
  EXPECT_NE(error_of(water).find("high_water"), std::string::npos) << water.body;
  Http eviction = call("PUT", "/v1/agents/echo", base + R"(,"reply_cache_eviction":"lfu"})");
  EXPECT_EQ(eviction.status, 400) << eviction.body;
  EXPECT_NE(error_of(eviction).find("unknown reply cache eviction 'lfu'"), std::string::npos) << eviction.body;
  Http window = call("PUT", "/v1/agents/echo", base + R"(,"dedup_window_ms":600001})");
  EXPECT_EQ(window.status, 400) << window.body;
  EXPECT_NE(error_of(window).find("dedup_window_ms: at most 600000"), std::string::npos) << window.body;
  EXPECT_EQ(call("GET", "/v1/agents/echo").parsed()["spec"].value("dispatch", ""), "sticky") << "nothing stored";

  const std::uint64_t before = version();
  Http ok = call("PUT", "/v1/agents/echo",
                 base + R"(,"dispatch":"jsq","class_scheduling":false,"reserved_interactive":3,)"
                        R"("queue_delay_target_us":5000,"high_water":0.75,"dedup_window_ms":4000,)"
                        R"("reply_cache_entries":12,"reply_cache_eviction":"fifo"})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  const json spec = call("GET", "/v1/agents/echo").parsed()["spec"];
  EXPECT_EQ(spec.value("dispatch", ""), "jsq") << spec.dump();
  EXPECT_FALSE(spec.value("class_scheduling", true)) << spec.dump();
  EXPECT_EQ(spec.value("reserved_interactive", 0), 3) << spec.dump();
  EXPECT_EQ(spec.value("queue_delay_target_us", 0), 5000) << spec.dump();
  EXPECT_EQ(spec.value("dedup_window_ms", 0), 4000) << spec.dump();
  EXPECT_EQ(spec.value("reply_cache_entries", 0), 12) << spec.dump();
  EXPECT_EQ(spec.value("reply_cache_eviction", ""), "fifo") << spec.dump();
  // The agent's target is also its pool's autoscaling target.
  EXPECT_EQ(call("GET", "/v1/agents/echo/scaling").parsed().value("queue_delay_target_us", 0), 5000);
  // A scale below the reservation is refused too.
  Http shrink = call("POST", "/v1/agents/echo/scale", R"({"min":1,"max":2})");
  EXPECT_EQ(shrink.status, 400) << shrink.body;
  EXPECT_NE(error_of(shrink).find("reserved_interactive (3) is more than the pool's max (2)"), std::string::npos)
      << shrink.body;
  EXPECT_TRUE(eventually([&] { return version() > before; })) << controlplane_->log();
  EXPECT_EQ(controlplane_->log().find("rejected tables"), std::string::npos) << controlplane_->log();
  auto reply = request(7, 77);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.type, protocol::MessageType::response);
}

}  // namespace
}  // namespace axon::controlplane
