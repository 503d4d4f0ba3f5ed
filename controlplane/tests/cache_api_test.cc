// The response cache through the real control plane (issue 14): an agent made cacheable over
// REST (real HTTPS, real tokens) is pushed to the real data plane, whose cache then answers an
// identical request without the worker (echo_worker --count: the cached reply carries the first
// request's count); DELETE /v1/agents/{name}/cache, DELETE /v1/cache and `axonctl cache
// invalidate` each make the next request run the handler again. Bad bodies, an unknown agent,
// a reader token and a cacheable agent without a TTL get clear errors. On the axrcc network.
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

class CacheApi : public ControlplaneDaemon {
 protected:
  CacheApi() { net_prefix_ = "axrcc"; }

  // One request of `text` to agent 7 from the namespace; the handler count its reply carries
  // (0: no RESPONSE).
  std::uint64_t ask(const std::string& text) {
    AxpClient client(*net_, AF_INET);
    if (!client.ok()) return 0;
    protocol::Header h = dataplane::it::request_header(1, 7);
    const std::vector<std::uint8_t> payload(text.begin(), text.end());
    if (!client.send(h, payload)) return 0;
    for (;;) {
      auto rx = client.receive(dataplane::it::kPatience);
      if (!rx) return 0;
      if (rx->header.request_id != h.request_id) continue;
      if (rx->header.type != protocol::MessageType::response || rx->payload.size() < 8) return 0;
      std::uint64_t count = 0;
      for (std::size_t i = 0; i < 8; ++i) count |= std::uint64_t(rx->payload[i]) << (8 * i);
      return count;
    }
  }

  int axonctl(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv{AXONCTL_BIN, "--api",     "https://127.0.0.1:" + std::to_string(port_), "--ca", cert_,
                                  "--token",   admin_token_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, out);
  }
};

TEST_F(CacheApi, InvalidationThroughRestAndAxonctl) {
  start_controlplane(config_text());
  ASSERT_TRUE(wait_warm(2));
  const std::string base =
      R"({"id":7,"tenant":1,"command":[")" AXON_ECHO_WORKER_BIN R"(","--count"],"pool":{"min":1,"max":1})";
  Http no_ttl = call("PUT", "/v1/agents/echo", base + R"(,"cacheable":true})");
  EXPECT_EQ(no_ttl.status, 400) << no_ttl.body;
  EXPECT_NE(error_of(no_ttl).find("cache_ttl_ms"), std::string::npos) << no_ttl.body;
  Http ok = call("PUT", "/v1/agents/echo", base + R"(,"cacheable":true,"cache_ttl_ms":600000})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_TRUE(ok.parsed()["spec"].value("cacheable", false)) << ok.body;
  EXPECT_EQ(ok.parsed()["spec"].value("cache_ttl_ms", 0), 600000) << ok.body;

  // Once the new worker (--count) serves and the data plane has the cacheable route, an
  // identical request is answered from the cache. A plain echo worker of the old spec echoes the
  // payload's first 8 bytes (text, far above any count): not accepted as a count.
  std::uint64_t first = 0;
  ASSERT_TRUE(eventually([&] {
    first = ask("cached tool call");
    return first != 0 && first < 1'000'000 && ask("cached tool call") == first;
  })) << controlplane_->log()
      << dataplane_->log();

  Http reader = call("DELETE", "/v1/agents/echo/cache", "", &reader_token_);
  EXPECT_EQ(reader.status, 403) << reader.body;
  EXPECT_EQ(ask("cached tool call"), first) << "a refused invalidation dropped nothing";
  Http unknown = call("DELETE", "/v1/agents/nope/cache");
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  EXPECT_NE(error_of(unknown).find("nope"), std::string::npos) << unknown.body;
  Http body = call("DELETE", "/v1/cache", R"({"agent":"echo"})");
  EXPECT_EQ(body.status, 400) << body.body;
  EXPECT_NE(error_of(body).find("unknown field 'agent'"), std::string::npos) << body.body;
  Http junk = call("DELETE", "/v1/agents/echo/cache", "{not json");
  EXPECT_EQ(junk.status, 400) << junk.body;

  Http one = call("DELETE", "/v1/agents/echo/cache");
  ASSERT_EQ(one.status, 204) << one.body;
  const std::uint64_t second = ask("cached tool call");
  EXPECT_GT(second, first) << "served an entry invalidated over REST";
  EXPECT_EQ(ask("cached tool call"), second);

  Http all = call("DELETE", "/v1/cache");
  ASSERT_EQ(all.status, 204) << all.body;
  const std::uint64_t third = ask("cached tool call");
  EXPECT_GT(third, second) << "served an entry after DELETE /v1/cache";
  EXPECT_EQ(ask("cached tool call"), third);

  std::string out;
  ASSERT_EQ(axonctl({"cache", "invalidate", "--agent", "echo"}, &out), 0) << out;
  EXPECT_NE(out.find("invalidated the response cache of agent echo"), std::string::npos) << out;
  const std::uint64_t fourth = ask("cached tool call");
  EXPECT_GT(fourth, third) << "served an entry after axonctl cache invalidate";
  ASSERT_EQ(axonctl({"cache", "invalidate", "--all"}, &out), 0) << out;
  EXPECT_GT(ask("cached tool call"), fourth);
  EXPECT_NE(axonctl({"cache", "invalidate", "--agent", "nope"}, &out), 0) << out;
  EXPECT_NE(out.find("nope"), std::string::npos) << out;
  EXPECT_NE(axonctl({"cache", "invalidate"}, &out), 0) << out;

  const json figures = call("GET", "/v1/agents/echo/cache").parsed();
  EXPECT_TRUE(figures.value("cacheable", false)) << figures.dump();
  ASSERT_TRUE(figures.contains("dataplane")) << figures.dump();
  EXPECT_TRUE(eventually([&] {
    const json d = call("GET", "/v1/agents/echo/cache").parsed()["dataplane"];
    return d.value("hits", 0) >= 4 && d.value("invalidations", 0) >= 1 && d["hit_latency_us"].value("count", 0) >= 4;
  })) << call("GET", "/v1/agents/echo/cache").body;
  EXPECT_EQ(call("GET", "/v1/agents/nope/cache").status, 404);
  const std::string metrics = call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("axon_dataplane_cache_hits_total"), std::string::npos);
  EXPECT_NE(metrics.find("axon_dataplane_cache_hit_latency_seconds_bucket"), std::string::npos);
}

}  // namespace
}  // namespace axon::controlplane
