// The response cache end to end (issue 14): the real axon-dataplane with XDP on a veth pair of
// this test's own (prefix axrc), a real echo_worker started with --count (the first 8 bytes of
// each reply: how many requests its handler ran), and an AXP client in the namespace.
//
// A cacheable agent's second identical request comes back with the first reply's count (the
// handler did not run) under the second request's own header; another payload, or a
// non-cacheable agent, runs the handler. An entry expires after the TTL (a short TTL, waited
// past: nothing is timed), is dropped by an invalidation over the control socket (one agent,
// all, an unknown agent refused), and by an apply that turns caching off. Another tenant never
// gets the cached reply. The counters and the hit-latency histogram are in the stats file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "axon/dataplane/control.h"
#include "axon/testing/dataplane_it.h"

namespace axon::dataplane::it {
namespace {

using protocol::Header;
using protocol::MessageType;

constexpr std::uint32_t kCached = 7;  // cacheable, long TTL
constexpr std::uint32_t kShort = 8;   // cacheable, short TTL
constexpr std::uint32_t kPlain = 9;   // not cacheable
constexpr std::uint32_t kShortTtlMs = 200;

std::string tables() {
  return "[[tenants]]\nid = 1\nname = \"t1\"\n\n[[tenants]]\nid = 2\nname = \"t2\"\n\n"
         "[[agents]]\nid = 7\ntenant = 1\nworkers = [\"w0\"]\ncacheable = true\ncache_ttl_ms = 600000\n\n"
         "[[agents]]\nid = 8\ntenant = 1\nworkers = [\"w0\"]\ncacheable = true\ncache_ttl_ms = " +
         std::to_string(kShortTtlMs) +
         "\n\n"
         "[[agents]]\nid = 9\ntenant = 1\nworkers = [\"w0\"]\n\n"
         "[response_cache]\nbytes = 1048576\n";
}

class ResponseCacheIT : public DataplaneIT<ResponseCacheIT> {
 protected:
  static void SetUpTestSuite() {
    axon::testing::NetworkSpec spec;
    spec.prefix = "axrc";
    create_network(spec);
  }

  void SetUp() override {
    DataplaneIT::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ConfigSpec spec;
    spec.tables = tables();
    ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
    ASSERT_NE(start_worker("w0", 0, 0, {"--count"}), nullptr);
    client_ = std::make_unique<AxpClient>(*net_, AF_INET);
    ASSERT_TRUE(client_->ok());
  }

  void TearDown() override {
    client_.reset();
    DataplaneIT::TearDown();
  }

  // Sends `text` (at least 8 bytes) to `agent`; returns the handler count the reply carries
  // (0: no RESPONSE), after checking that the reply is this request's.
  std::uint64_t call(std::uint32_t agent, const std::string& text, std::uint32_t tenant = 1,
                     Header* reply_out = nullptr) {
    Header h = request_header(tenant, agent);
    const std::vector<std::uint8_t> payload(text.begin(), text.end());
    if (!client_->send(h, payload)) {
      ADD_FAILURE() << "send failed";
      return 0;
    }
    for (;;) {
      auto rx = client_->receive(kPatience);
      if (!rx) {
        ADD_FAILURE() << "no reply to request " << h.request_id;
        return 0;
      }
      if (rx->header.request_id != h.request_id) continue;  // a late reply of an earlier call
      if (reply_out != nullptr) *reply_out = rx->header;
      if (rx->header.type != MessageType::response) return 0;
      EXPECT_EQ(rx->header.session_key, h.session_key);
      EXPECT_EQ(rx->header.trace_id, h.trace_id);
      EXPECT_NE(rx->header.span_id, h.span_id);
      EXPECT_EQ(rx->payload.size(), payload.size());
      if (rx->payload.size() < 8) return 0;
      EXPECT_TRUE(std::equal(payload.begin() + 8, payload.end(), rx->payload.begin() + 8)) << "echo body differs";
      std::uint64_t count = 0;
      for (std::size_t i = 0; i < 8; ++i) count |= std::uint64_t(rx->payload[i]) << (8 * i);
      return count;
    }
  }

  std::uint64_t handled() { return stats().worker_counter(0, &WorkerStats::completed); }

  // The counters are published each housekeeping tick: wait until they show `n` hits.
  bool hits_reach(std::uint64_t n) {
    return eventually([&] { return stats().totals().cache_hits >= n; });
  }

  control::ControlClient control() {
    auto client = control::ControlClient::connect(dir_->path());
    EXPECT_TRUE(client) << client.message();
    return std::move(client).value();
  }

  std::unique_ptr<AxpClient> client_;
};

TEST_F(ResponseCacheIT, SecondIdenticalRequestIsAnsweredWithoutTheWorker) {
  const std::uint64_t first = call(kCached, "payload-A: the same tool call");
  ASSERT_NE(first, 0u);
  const std::uint64_t ran = handled();
  Header reply{};
  EXPECT_EQ(call(kCached, "payload-A: the same tool call", 1, &reply), first) << "the handler ran again";
  EXPECT_EQ(reply.type, MessageType::response);
  EXPECT_EQ(call(kCached, "payload-A: the same tool call"), first);
  EXPECT_EQ(handled(), ran) << "a cached reply must not reach the worker";
  // Another payload, and the same payload to an agent that is not cacheable, run the handler.
  const std::uint64_t other = call(kCached, "payload-B: another tool call");
  EXPECT_GT(other, first);
  const std::uint64_t plain1 = call(kPlain, "payload-A: the same tool call");
  const std::uint64_t plain2 = call(kPlain, "payload-A: the same tool call");
  EXPECT_GT(plain1, other);
  EXPECT_GT(plain2, plain1);
  // Published each housekeeping tick: wait for the tick after the last request.
  ASSERT_TRUE(eventually([&] {
    const LcoreTotals now = stats().totals();
    return now.cache_hits >= 2 && now.cache_misses >= 2 && now.cache_insertions >= 2;
  }));
  const LcoreTotals t = stats().totals();
  EXPECT_EQ(t.cache_hits, 2u);
  EXPECT_EQ(t.cache_misses, 2u);  // payload-A's first call and payload-B's
  EXPECT_EQ(t.cache_insertions, 2u);
  EXPECT_EQ(t.cache_entries, 2u);
  EXPECT_GT(t.cache_bytes, 0u);
  EXPECT_EQ(stats().cache_hit_latency().count, 2u);
}

TEST_F(ResponseCacheIT, AnotherTenantNeverGetsTheCachedReply) {
  const std::uint64_t first = call(kCached, "tenant-1 secret request");
  ASSERT_NE(first, 0u);
  ASSERT_EQ(call(kCached, "tenant-1 secret request"), first);
  Header reply{};
  EXPECT_EQ(call(kCached, "tenant-1 secret request", 2, &reply), 0u);
  EXPECT_EQ(reply.type, MessageType::error);
  EXPECT_EQ(reply.error_code, protocol::ErrorCode::unknown_agent);
  ASSERT_TRUE(hits_reach(1));
  EXPECT_EQ(stats().totals().cache_hits, 1u);
}

TEST_F(ResponseCacheIT, AnEntryExpiresAfterTheTtl) {
  const std::uint64_t first = call(kShort, "short-lived answer");
  ASSERT_NE(first, 0u);
  // Within the TTL it is served from the cache, unless this machine was too slow to ask in time:
  // then it was a miss, never a stale hit (checked below), and the hit is not required.
  const auto asked = Clock::now();
  const std::uint64_t second = call(kShort, "short-lived answer");
  if (Clock::now() - asked < std::chrono::milliseconds(kShortTtlMs / 2)) {
    EXPECT_EQ(second, first);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(kShortTtlMs + 100));
  const std::uint64_t after = call(kShort, "short-lived answer");
  EXPECT_GT(after, std::max(first, second)) << "an expired entry was served";
  ASSERT_TRUE(eventually([&] { return stats().totals().cache_expirations >= 1; }));
}

TEST_F(ResponseCacheIT, InvalidationOverTheControlSocketDropsEntries) {
  const std::uint64_t a = call(kCached, "invalidate me");
  ASSERT_EQ(call(kCached, "invalidate me"), a);
  auto ctl = control();
  ASSERT_TRUE(ctl.invalidate_cache(kCached)) << "invalidate agent 7";
  const std::uint64_t b = call(kCached, "invalidate me");
  EXPECT_GT(b, a) << "served an invalidated entry";
  EXPECT_EQ(call(kCached, "invalidate me"), b) << "the fresh reply is cached again";
  ASSERT_TRUE(ctl.invalidate_cache(0)) << "invalidate all";
  EXPECT_GT(call(kCached, "invalidate me"), b);
  auto unknown = ctl.invalidate_cache(4242);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.code(), control::ControlError::rejected);
  EXPECT_NE(unknown.message().find("no agent with id 4242"), std::string::npos) << unknown.message();
  ASSERT_TRUE(eventually([&] { return stats().totals().cache_invalidations >= 2; }));
}

TEST_F(ResponseCacheIT, TurningCachingOffByApplyServesNoStaleEntry) {
  const std::uint64_t a = call(kCached, "config change");
  ASSERT_EQ(call(kCached, "config change"), a);
  control::Tables t;
  t.version = 5;
  t.tenants.push_back(model::Tenant{});
  t.tenants[0].id = 1;
  model::Route route{kCached, 1, "cached", {"w0"}, {}};
  t.agents.push_back(route);  // cacheable off
  auto ctl = control();
  ASSERT_TRUE(ctl.apply(t));
  const std::uint64_t b = call(kCached, "config change");
  EXPECT_GT(b, a);
  EXPECT_GT(call(kCached, "config change"), b) << "not cacheable: every request runs the handler";
  // On again (same TTL as before): what was stored before it went off is not served.
  t.version = 6;
  t.agents[0].scheduling.cacheable = true;
  t.agents[0].scheduling.cache_ttl_ms = 600000;
  ASSERT_TRUE(ctl.apply(t));
  const std::uint64_t c = call(kCached, "config change");
  EXPECT_GT(c, b);
  EXPECT_EQ(call(kCached, "config change"), c);
}

}  // namespace
}  // namespace axon::dataplane::it
