// The response cache alone (dataplane/src/response_cache.h): hit, miss, TTL expiry (and a
// lowered TTL), the byte bound with FIFO eviction, invalidation by generation (one agent, all,
// and a changed configuration), tenant isolation, 64 KiB payloads, and that its bookkeeping
// never leaks through many wraps of the ring. Also the [response_cache] and agent cache keys
// of the config file and the control socket's cache messages.
#include "response_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <random>
#include <vector>

#include "axon/dataplane/config.h"

#include "control_codec.h"

namespace axon::dataplane {
namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kTtl = 1000 * kMs;

std::unique_ptr<ResponseCache> make_cache(std::uint64_t bytes = ResponseCache::kMinBytes) {
  auto cache = ResponseCache::create(bytes);
  EXPECT_TRUE(cache) << cache.message();
  return std::move(cache).value();
}

std::vector<std::uint8_t> bytes_of(std::size_t size, std::uint8_t seed) {
  std::vector<std::uint8_t> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = std::uint8_t(seed + i * 7);
  return v;
}

CacheKey key(const std::string& request, std::uint32_t tenant = 1, std::uint32_t agent = 7) {
  return ResponseCache::key_of(tenant, agent,
                               std::span(reinterpret_cast<const std::uint8_t*>(request.data()), request.size()));
}

std::optional<std::vector<std::uint8_t>> lookup(ResponseCache& c, const CacheKey& k, std::uint64_t now,
                                                std::uint32_t gen = 0, std::uint64_t ttl = kTtl) {
  std::span<const std::uint8_t> out;
  if (!c.try_lookup(k, gen, ttl, now, out)) return std::nullopt;
  return std::vector<std::uint8_t>(out.begin(), out.end());
}

TEST(ResponseCache, HitReturnsTheStoredReplyAndAMissFindsNothing) {
  auto c = make_cache();
  const auto reply = bytes_of(300, 1);
  EXPECT_FALSE(lookup(*c, key("q1"), 0));
  ASSERT_TRUE(c->insert(key("q1"), 0, kTtl, 10, reply));
  EXPECT_EQ(lookup(*c, key("q1"), 20), reply);
  EXPECT_EQ(lookup(*c, key("q1"), 30), reply);
  EXPECT_FALSE(lookup(*c, key("q2"), 30));        // another payload
  EXPECT_FALSE(lookup(*c, key("q1", 1, 8), 30));  // another agent
  EXPECT_EQ(c->counters().hits, 2u);
  EXPECT_EQ(c->counters().insertions, 1u);
  EXPECT_EQ(c->entries(), 1u);
  EXPECT_EQ(c->bytes_in_use(), ResponseCache::kAlign + 320u);  // header + payload in 64-byte granules
}

TEST(ResponseCache, KeysDifferByPayloadTenantAndAgent) {
  const CacheKey a = key("same"), b = key("same");
  EXPECT_EQ(a.hash[0], b.hash[0]);
  EXPECT_EQ(a.hash[1], b.hash[1]);
  const CacheKey other = key("samf");
  EXPECT_FALSE(a.hash[0] == other.hash[0] && a.hash[1] == other.hash[1]);
  EXPECT_EQ(key("same", 2).tenant_id, 2u);
  EXPECT_EQ(key("same", 1, 9).agent_id, 9u);
}

TEST(ResponseCache, AReplyIsNeverServedToAnotherTenant) {
  auto c = make_cache();
  ASSERT_TRUE(c->insert(key("tool call", 1), 0, kTtl, 0, bytes_of(64, 3)));
  EXPECT_FALSE(lookup(*c, key("tool call", 2), 1));
  EXPECT_TRUE(lookup(*c, key("tool call", 1), 1));
  // Each tenant gets its own entry for the same payload.
  ASSERT_TRUE(c->insert(key("tool call", 2), 0, kTtl, 2, bytes_of(64, 9)));
  EXPECT_EQ(lookup(*c, key("tool call", 1), 3), bytes_of(64, 3));
  EXPECT_EQ(lookup(*c, key("tool call", 2), 3), bytes_of(64, 9));
}

TEST(ResponseCache, EntriesExpireAfterTheirTtlAndUnderALoweredOne) {
  auto c = make_cache();
  ASSERT_TRUE(c->insert(key("a"), 0, 5 * kMs, 100, bytes_of(10, 1)));
  EXPECT_TRUE(lookup(*c, key("a"), 100 + 5 * kMs - 1, 0, 5 * kMs));
  EXPECT_FALSE(lookup(*c, key("a"), 100 + 5 * kMs, 0, 5 * kMs));
  EXPECT_EQ(c->counters().expirations, 1u);
  EXPECT_EQ(c->entries(), 0u);
  EXPECT_EQ(c->bytes_in_use(), 0u);
  // Stored under a 1 s TTL, looked up after the agent's TTL went down to 2 ms: not served.
  ASSERT_TRUE(c->insert(key("b"), 0, kTtl, 0, bytes_of(10, 2)));
  EXPECT_TRUE(lookup(*c, key("b"), 1 * kMs, 0, 2 * kMs));
  EXPECT_FALSE(lookup(*c, key("b"), 3 * kMs, 0, 2 * kMs));
  EXPECT_EQ(c->counters().expirations, 2u);
}

TEST(ResponseCache, StaysWithinItsBytesEvictingOldestFirst) {
  auto c = make_cache();
  const std::size_t size = 10'000;
  const std::uint64_t record = ResponseCache::kAlign + (size + 63) / 64 * 64;
  const std::uint64_t fit = c->capacity() / record;
  const int n = int(fit) * 3;
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(c->insert(key("r" + std::to_string(i)), 0, kTtl, std::uint64_t(i), bytes_of(size, std::uint8_t(i))));
    ASSERT_LE(c->bytes_in_use(), c->capacity());
  }
  EXPECT_GT(c->counters().evictions, 0u);
  EXPECT_EQ(c->counters().insertions, std::uint64_t(n));
  EXPECT_EQ(c->counters().insertions, c->entries() + c->counters().evictions);
  // FIFO: the newest entries are all there, the oldest are gone.
  EXPECT_FALSE(lookup(*c, key("r0"), std::uint64_t(n)));
  EXPECT_FALSE(lookup(*c, key("r" + std::to_string(n - int(fit) - 1)), std::uint64_t(n)));
  for (int i = n - int(c->entries()); i < n; ++i) {
    EXPECT_EQ(lookup(*c, key("r" + std::to_string(i)), std::uint64_t(n)), bytes_of(size, std::uint8_t(i))) << i;
  }
  EXPECT_GE(c->entries(), fit - 1);  // at most one record's worth lost to the padding at the wrap
}

TEST(ResponseCache, InvalidationByGenerationDropsStaleEntries) {
  auto c = make_cache();
  CacheGenerations gens;
  const std::uint32_t g7 = gens.current(7), g8 = gens.current(8);
  ASSERT_TRUE(c->insert(key("x", 1, 7), g7, kTtl, 0, bytes_of(50, 1)));
  ASSERT_TRUE(c->insert(key("x", 1, 8), g8, kTtl, 0, bytes_of(50, 2)));
  gens.invalidate(7);
  EXPECT_NE(gens.current(7), g7);
  EXPECT_EQ(gens.current(8), g8);
  EXPECT_FALSE(lookup(*c, key("x", 1, 7), 1, gens.current(7)));
  EXPECT_EQ(c->counters().invalidations, 1u);
  EXPECT_TRUE(lookup(*c, key("x", 1, 8), 1, gens.current(8)));
  // A reply computed before the invalidation (stored under the old generation) is never served.
  ASSERT_TRUE(c->insert(key("x", 1, 7), g7, kTtl, 2, bytes_of(50, 1)));
  EXPECT_FALSE(lookup(*c, key("x", 1, 7), 3, gens.current(7)));
  gens.invalidate_all();
  EXPECT_FALSE(lookup(*c, key("x", 1, 8), 4, gens.current(8)));
  EXPECT_EQ(c->entries(), 0u);
  EXPECT_EQ(c->bytes_in_use(), 0u);
}

TEST(ResponseCache, AChangedAgentConfigurationInvalidatesOnlyThatAgent) {
  CacheGenerations gens;
  model::Route a{7, 1, "a", {}, {}}, b{8, 1, "b", {}, {}}, gone{9, 1, "c", {}, {}};
  a.scheduling.cacheable = b.scheduling.cacheable = true;
  a.scheduling.cache_ttl_ms = b.scheduling.cache_ttl_ms = 1000;
  const std::uint32_t g7 = gens.current(7), g8 = gens.current(8), g9 = gens.current(9);
  invalidate_changed(gens, {a, b, gone}, {a, b, gone});
  EXPECT_EQ(gens.current(7), g7);
  EXPECT_EQ(gens.current(8), g8);
  model::Route a2 = a;
  a2.scheduling.cache_ttl_ms = 500;  // TTL changed
  model::Route b2 = b;
  invalidate_changed(gens, {a, b, gone}, {a2, b2});
  EXPECT_NE(gens.current(7), g7);
  EXPECT_EQ(gens.current(8), g8);
  EXPECT_NE(gens.current(9), g9);  // removed
  const std::uint32_t g8b = gens.current(8);
  b2.scheduling.cacheable = false;
  invalidate_changed(gens, {a2, b}, {a2, b2});
  EXPECT_NE(gens.current(8), g8b);
}

TEST(ResponseCache, LargeAndEmptyRepliesRoundTrip) {
  auto c = make_cache();
  const auto big = bytes_of(65536, 5);
  ASSERT_TRUE(c->insert(key("big"), 0, kTtl, 0, big));
  ASSERT_TRUE(c->insert(key("empty"), 0, kTtl, 0, {}));
  EXPECT_EQ(lookup(*c, key("big"), 1), big);
  const auto empty = lookup(*c, key("empty"), 1);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  // The second 64 KiB reply pushes the first out of a 128 KiB cache (not both fit with headers).
  ASSERT_TRUE(c->insert(key("big2"), 0, kTtl, 2, bytes_of(65536, 6)));
  EXPECT_EQ(lookup(*c, key("big2"), 3), bytes_of(65536, 6));
  EXPECT_FALSE(lookup(*c, key("big"), 3));
}

TEST(ResponseCache, ASameKeyInsertReplacesTheEntry) {
  auto c = make_cache();
  ASSERT_TRUE(c->insert(key("k"), 0, kTtl, 0, bytes_of(100, 1)));
  ASSERT_TRUE(c->insert(key("k"), 0, kTtl, 1, bytes_of(200, 2)));
  EXPECT_EQ(lookup(*c, key("k"), 2), bytes_of(200, 2));
  EXPECT_EQ(c->entries(), 1u);
}

// Random sizes from 0 to 64 KiB through many wraps of the ring: the bound holds, every entry
// the index still has is the right one, and the counters add up (nothing leaks).
TEST(ResponseCache, ManyWrapsLeakNothing) {
  auto c = make_cache(256u << 10);
  std::mt19937 rng(42);
  std::deque<int> recent;
  for (int i = 0; i < 5000; ++i) {
    const std::size_t size = rng() % 3 == 0 ? rng() % 65537 : rng() % 2000;
    ASSERT_TRUE(c->insert(key("m" + std::to_string(i)), 0, kTtl, std::uint64_t(i), bytes_of(size, std::uint8_t(i))));
    ASSERT_LE(c->bytes_in_use(), c->capacity());
    recent.push_back(i);
    if (recent.size() > 64) recent.pop_front();
  }
  const CacheCounters& k = c->counters();
  EXPECT_EQ(k.insertions, c->entries() + k.evictions + k.expirations + k.invalidations);
  std::uint32_t found = 0;
  for (int i = 0; i < 5000; ++i) {
    std::span<const std::uint8_t> out;
    if (!c->try_lookup(key("m" + std::to_string(i)), 0, kTtl, 5000, out)) continue;
    ++found;
    if (!out.empty()) {
      EXPECT_EQ(out[0], std::uint8_t(i)) << i;
    }
  }
  EXPECT_EQ(found, c->entries());
  EXPECT_TRUE(lookup(*c, key("m4999"), 5000));  // the newest is always there
  // Everything expires: the bytes all come back as the ring's tail passes them.
  for (int i = 0; i < 5000; ++i) (void)lookup(*c, key("m" + std::to_string(i)), 5000 + kTtl);
  EXPECT_EQ(c->entries(), 0u);
  EXPECT_EQ(c->bytes_in_use(), 0u);
}

TEST(ResponseCache, SizeOutsideItsBoundsIsRefused) {
  EXPECT_FALSE(ResponseCache::create(4096));
  EXPECT_FALSE(ResponseCache::create(ResponseCache::kMaxBytes + 1));
  auto bad = ResponseCache::create(0);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.message().find("[response_cache] bytes"), std::string::npos) << bad.message();
}

TEST(ResponseCacheConfig, KeysParseAndBadValuesAreRefused) {
  const std::string base =
      "[dataplane]\ninterface = \"lo\"\n\n[[workers]]\nname = \"w\"\n\n"
      "[[agents]]\nid = 1\ntenant = 0\nworkers = [\"w\"]\n";
  auto ok = parse_config(base + "cacheable = true\ncache_ttl_ms = 250\n\n[response_cache]\nbytes = 262144\n", "t");
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_TRUE(ok->agents[0].scheduling.cacheable);
  EXPECT_EQ(ok->agents[0].scheduling.cache_ttl_ms, 250u);
  EXPECT_EQ(ok->response_cache.bytes, 262144u);
  auto defaults = parse_config(base, "t");
  ASSERT_TRUE(defaults.ok()) << defaults.message();
  EXPECT_FALSE(defaults->agents[0].scheduling.cacheable);
  EXPECT_EQ(defaults->response_cache.bytes, ResponseCacheSettings{}.bytes);
  auto no_ttl = parse_config(base + "cacheable = true\n", "t");
  ASSERT_FALSE(no_ttl.ok());
  EXPECT_NE(no_ttl.message().find("cache_ttl_ms: a cacheable agent needs a TTL"), std::string::npos)
      << no_ttl.message();
  auto long_ttl = parse_config(base + "cacheable = true\ncache_ttl_ms = 86400001\n", "t");
  ASSERT_FALSE(long_ttl.ok());
  EXPECT_NE(long_ttl.message().find("cache_ttl_ms"), std::string::npos) << long_ttl.message();
  auto small = parse_config(base + "\n[response_cache]\nbytes = 4096\n", "t");
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.message().find("use 0 (no response cache) or 131072"), std::string::npos) << small.message();
  auto off = parse_config(base + "\n[response_cache]\nbytes = 0\n", "t");
  ASSERT_TRUE(off.ok()) << off.message();
  EXPECT_EQ(off->response_cache.bytes, 0u);
}

TEST(ResponseCacheControl, ApplyCarriesTheCacheKeysAndInvalidateIsChecked) {
  using namespace control;
  Tables t;
  t.version = 1;
  AgentEntry a{7, 1, "echo", {"slot-0"}, {}};
  a.scheduling.cacheable = true;
  a.scheduling.cache_ttl_ms = 1500;
  t.agents.push_back(a);
  auto r = parse_request(encode_apply_request(t));
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->tables.agents[0], a);
  auto bad = parse_request(
      R"({"op":"apply","version":1,"tenants":[],"agents":[{"id":1,"tenant":1,"workers":[],"cacheable":true}]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("cache_ttl_ms"), std::string::npos) << bad.message();

  auto one = parse_request(encode_invalidate_cache_request(7));
  ASSERT_TRUE(one.ok()) << one.message();
  EXPECT_EQ(one->op, Op::invalidate_cache);
  EXPECT_EQ(one->agent_id, 7u);
  EXPECT_FALSE(one->all);
  auto all = parse_request(encode_invalidate_cache_request(0));
  ASSERT_TRUE(all.ok()) << all.message();
  EXPECT_TRUE(all->all);
  for (const char* text : {R"({"op":"invalidate_cache"})", R"({"op":"invalidate_cache","agent":7,"all":true})",
                           R"({"op":"invalidate_cache","agent":0})", R"({"op":"invalidate_cache","agent":"x"})",
                           R"({"op":"invalidate_cache","every":true})"}) {
    auto refused = parse_request(text);
    EXPECT_FALSE(refused.ok()) << text;
  }
}

}  // namespace
}  // namespace axon::dataplane
