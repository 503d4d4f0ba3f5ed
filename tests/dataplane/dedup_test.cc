// The dedup table alone (dataplane/src/dedup.h): in flight, answered, the window, LRU against
// FIFO eviction, tombstones, tenant and agent isolation, the arena bound, remote settlement, and
// that every path gives its entries and bytes back.
#include "dedup.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace axon::dataplane {
namespace {

using Verdict = DedupTable::Verdict;
using model::ReplyCacheEviction;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint32_t kAgent = 42;

std::unique_ptr<DedupTable> make_table(std::uint32_t entries = 64, std::uint32_t arena = 1u << 20) {
  auto table = DedupTable::create(DedupLimits{entries, arena});
  EXPECT_TRUE(table) << table.message();
  return std::move(table).value();
}

DedupKey key_of(std::uint64_t request_id, std::uint32_t tenant = 1, std::uint16_t port = 5000) {
  DedupKey key;
  key.tenant_id = tenant;
  key.src_port = port;
  key.src_addr[15] = 7;
  key.request_id = request_id;
  return key;
}

DedupPolicy policy_of(std::uint32_t window_ms = 1000, std::uint32_t entries = 8,
                      ReplyCacheEviction eviction = ReplyCacheEviction::lru) {
  return DedupPolicy{window_ms * kMs, entries, eviction};
}

std::vector<std::uint8_t> bytes_of(std::uint32_t length, std::uint8_t seed) {
  std::vector<std::uint8_t> out(length);
  for (std::uint32_t i = 0; i < length; ++i) out[i] = std::uint8_t(i * 13 + seed);
  return out;
}

protocol::Header reply_of(std::uint64_t request_id) {
  protocol::Header h;
  h.type = protocol::MessageType::response;
  h.request_id = request_id;
  h.span_id[0] = std::uint8_t(request_id);
  return h;
}

// Enters request `id` and answers it with `payload` at `now`; returns the entry.
std::uint32_t answer(DedupTable& t, std::uint64_t id, const std::vector<std::uint8_t>& payload, std::uint64_t now,
                     const DedupPolicy& policy = policy_of(), std::uint32_t tenant = 1,
                     std::uint32_t* evicted = nullptr) {
  const auto fresh = t.begin(key_of(id, tenant), kAgent, policy, now);
  EXPECT_EQ(fresh.verdict, Verdict::fresh) << id;
  const auto settled = t.settle(fresh.entry, fresh.generation, true, reply_of(id), payload, now);
  if (evicted != nullptr) *evicted = settled.evicted;
  return fresh.entry;
}

TEST(DedupTable, InFlightIsAbsorbedThenAnsweredFromTheCache) {
  auto t = make_table();
  const auto first = t->begin(key_of(1), kAgent, policy_of(), 0);
  ASSERT_EQ(first.verdict, Verdict::fresh);
  EXPECT_EQ(t->begin(key_of(1), kAgent, policy_of(), 1 * kMs).verdict, Verdict::in_flight);
  EXPECT_EQ(t->begin(key_of(2), kAgent, policy_of(), 1 * kMs).verdict, Verdict::fresh);
  const auto payload = bytes_of(3000, 5);
  const auto settled = t->settle(first.entry, first.generation, true, reply_of(1), payload, 2 * kMs);
  EXPECT_TRUE(settled.cached);
  EXPECT_EQ(settled.evicted, 0u);
  EXPECT_EQ(t->bytes_in_use(), 3000u);
  const auto hit = t->begin(key_of(1), kAgent, policy_of(), 3 * kMs);
  ASSERT_EQ(hit.verdict, Verdict::answered);
  EXPECT_EQ(t->reply(hit.entry), reply_of(1));
  const auto cached = t->payload(hit.entry);
  EXPECT_EQ(std::vector<std::uint8_t>(cached.begin(), cached.end()), payload);
  // A second settlement of the same generation (a late reply) changes nothing.
  EXPECT_FALSE(t->settle(first.entry, first.generation, true, reply_of(99), bytes_of(10, 1), 4 * kMs).cached);
  EXPECT_EQ(t->reply(hit.entry), reply_of(1));
}

TEST(DedupTable, AnsweredEntriesDieAtTheEndOfTheWindow) {
  auto t = make_table();
  answer(*t, 1, bytes_of(100, 1), 10 * kMs, policy_of(50));
  EXPECT_EQ(t->begin(key_of(1), kAgent, policy_of(50), 59 * kMs).verdict, Verdict::answered);
  // 50 ms after the answer: a new request, run again.
  EXPECT_EQ(t->begin(key_of(1), kAgent, policy_of(50), 60 * kMs).verdict, Verdict::fresh);
  EXPECT_EQ(t->bytes_in_use(), 0u);
  EXPECT_EQ(t->entries_in_use(), 1u);
  // expire() frees what nobody looks up again.
  answer(*t, 2, bytes_of(100, 2), 10 * kMs, policy_of(50));
  EXPECT_EQ(t->expire(59 * kMs, 100), 0u);
  EXPECT_EQ(t->expire(60 * kMs, 100), 1u);
  EXPECT_EQ(t->entries_in_use(), 1u);  // request 1, in flight again: never expires
  EXPECT_EQ(t->expire(1'000'000 * kMs, 100), 0u);
}

TEST(DedupTable, NotExecutedIsForgottenSoARetryRuns) {
  auto t = make_table();
  const auto first = t->begin(key_of(1), kAgent, policy_of(), 0);
  t->settle(first.entry, first.generation, false, reply_of(1), {}, 1 * kMs);
  EXPECT_EQ(t->entries_in_use(), 0u);
  EXPECT_EQ(t->begin(key_of(1), kAgent, policy_of(), 2 * kMs).verdict, Verdict::fresh);
}

TEST(DedupTable, ATenantNeverSeesAnotherTenantsReply) {
  auto t = make_table();
  answer(*t, 1, bytes_of(64, 1), 0, policy_of(), /*tenant=*/1);
  EXPECT_EQ(t->begin(key_of(1, 2), kAgent, policy_of(), 1 * kMs).verdict, Verdict::fresh);
  EXPECT_EQ(t->begin(key_of(1, 1, 5001), kAgent, policy_of(), 1 * kMs).verdict, Verdict::fresh);  // other port
  EXPECT_EQ(t->begin(key_of(1, 1), kAgent + 1, policy_of(), 1 * kMs).verdict, Verdict::fresh);    // other agent
  EXPECT_EQ(t->begin(key_of(1, 1), kAgent, policy_of(), 1 * kMs).verdict, Verdict::answered);
}

// Three replies fit the agent's two entries: the one that goes is the least recently used under
// LRU (request 1 was re-answered, so 2 goes) and the oldest under FIFO (1 goes).
TEST(DedupTable, LruAndFifoEvictDifferentReplies) {
  for (const ReplyCacheEviction eviction : {ReplyCacheEviction::lru, ReplyCacheEviction::fifo}) {
    auto t = make_table();
    const DedupPolicy policy = policy_of(1000, 2, eviction);
    answer(*t, 1, bytes_of(10, 1), 0, policy);
    answer(*t, 2, bytes_of(10, 2), 1 * kMs, policy);
    ASSERT_EQ(t->begin(key_of(1), kAgent, policy, 2 * kMs).verdict, Verdict::answered);
    std::uint32_t evicted = 0;
    answer(*t, 3, bytes_of(10, 3), 3 * kMs, policy, 1, &evicted);
    EXPECT_EQ(evicted, 1u);
    EXPECT_EQ(t->cached(kAgent), 2u);
    const std::uint64_t gone = eviction == ReplyCacheEviction::lru ? 2 : 1;
    const std::uint64_t kept = eviction == ReplyCacheEviction::lru ? 1 : 2;
    // The evicted one is a tombstone for the rest of its window: never run again.
    EXPECT_EQ(t->begin(key_of(gone), kAgent, policy, 4 * kMs).verdict, Verdict::tombstone) << to_string(eviction);
    EXPECT_EQ(t->begin(key_of(kept), kAgent, policy, 4 * kMs).verdict, Verdict::answered) << to_string(eviction);
    EXPECT_EQ(t->begin(key_of(3), kAgent, policy, 4 * kMs).verdict, Verdict::answered);
    EXPECT_EQ(t->bytes_in_use(), 20u);
    // And dead after it.
    EXPECT_EQ(t->begin(key_of(gone), kAgent, policy, 1001 * kMs).verdict, Verdict::fresh);
  }
}

// Each agent's replies count against its own reply_cache_entries only.
TEST(DedupTable, AgentsHaveTheirOwnShare) {
  auto t = make_table();
  const DedupPolicy one = policy_of(1000, 1);
  const auto a = t->begin(key_of(1), 7, one, 0);
  t->settle(a.entry, a.generation, true, reply_of(1), bytes_of(5, 1), 0);
  const auto b = t->begin(key_of(2), 8, one, 0);
  EXPECT_EQ(t->settle(b.entry, b.generation, true, reply_of(2), bytes_of(5, 2), 0).evicted, 0u);
  EXPECT_EQ(t->begin(key_of(1), 7, one, 1).verdict, Verdict::answered);
  EXPECT_EQ(t->begin(key_of(2), 8, one, 1).verdict, Verdict::answered);
}

// The arena is a ring: replies that no longer fit push out the oldest payloads (tombstones);
// a reply larger than the whole arena is a tombstone at once. Bytes never exceed the arena.
TEST(DedupTable, TheArenaBoundHolds) {
  auto t = make_table(64, 65536);
  const DedupPolicy policy = policy_of(1000, 64);
  std::uint32_t evicted_total = 0;
  for (std::uint64_t id = 1; id <= 20; ++id) {
    std::uint32_t evicted = 0;
    answer(*t, id, bytes_of(20000, std::uint8_t(id)), id * kMs, policy, 1, &evicted);
    evicted_total += evicted;
    EXPECT_LE(t->bytes_in_use(), 65536u);
  }
  EXPECT_EQ(evicted_total, 17u);  // three 20000-byte replies fit 65536 at a time
  EXPECT_EQ(t->bytes_in_use(), 60000u);
  for (std::uint64_t id = 1; id <= 17; ++id) {
    EXPECT_EQ(t->begin(key_of(id), kAgent, policy, 30 * kMs).verdict, Verdict::tombstone) << id;
  }
  for (std::uint64_t id = 18; id <= 20; ++id) {
    const auto hit = t->begin(key_of(id), kAgent, policy, 30 * kMs);
    ASSERT_EQ(hit.verdict, Verdict::answered) << id;
    const auto cached = t->payload(hit.entry);
    EXPECT_EQ(std::vector<std::uint8_t>(cached.begin(), cached.end()), bytes_of(20000, std::uint8_t(id))) << id;
  }
  const auto big = t->begin(key_of(100), kAgent, policy, 31 * kMs);
  EXPECT_FALSE(t->settle(big.entry, big.generation, true, reply_of(100), bytes_of(70000, 1), 31 * kMs).cached);
  EXPECT_EQ(t->begin(key_of(100), kAgent, policy, 32 * kMs).verdict, Verdict::tombstone);
}

// Payloads of several sizes through a small arena for many windows: every cached payload read
// back is the one written, and when everything has expired nothing is left in use.
TEST(DedupTable, NoLeakAndNoCorruptionOverManyWrapArounds) {
  auto t = make_table(32, 65536);
  const DedupPolicy policy = policy_of(5, 16, ReplyCacheEviction::fifo);
  std::uint64_t now = 0;
  for (std::uint64_t id = 1; id <= 3000; ++id) {
    now += kMs / 4;
    const auto length = std::uint32_t((id * 7919) % 9000);
    const auto found = t->begin(key_of(id % 24), kAgent, policy, now);
    if (found.verdict == Verdict::fresh) {
      t->settle(found.entry, found.generation, true, reply_of(id), bytes_of(length, std::uint8_t(id)), now);
    } else if (found.verdict == Verdict::answered) {
      const auto cached = t->payload(found.entry);
      const std::uint64_t original = t->reply(found.entry).request_id;
      const auto expected = bytes_of(std::uint32_t((original * 7919) % 9000), std::uint8_t(original));
      ASSERT_EQ(std::vector<std::uint8_t>(cached.begin(), cached.end()), expected) << id;
    }
    (void)t->expire(now, 8);
    ASSERT_LE(t->bytes_in_use(), 65536u);
    ASSERT_LE(t->cached(kAgent), 16u);
  }
  (void)t->expire(now + 10 * kMs, 1000);
  EXPECT_EQ(t->entries_in_use(), 0u);
  EXPECT_EQ(t->bytes_in_use(), 0u);
  EXPECT_EQ(t->cached(kAgent), 0u);
}

TEST(DedupTable, AFullTableLeavesNewRequestsUntracked) {
  auto t = make_table(16);
  for (std::uint64_t id = 1; id <= 16; ++id) {
    EXPECT_EQ(t->begin(key_of(id), kAgent, policy_of(), 0).verdict, Verdict::fresh);
  }
  EXPECT_EQ(t->begin(key_of(17), kAgent, policy_of(), 0).verdict, Verdict::untracked);
  EXPECT_EQ(t->begin(key_of(3), kAgent, policy_of(), 0).verdict, Verdict::in_flight);
}

// Another lcore answered the request: a tombstone for the window (executed) or forgotten.
TEST(DedupTable, RemoteSettlementFromAnotherThread) {
  auto t = make_table();
  const auto ran = t->begin(key_of(1), kAgent, policy_of(100), 0);
  const auto refused = t->begin(key_of(2), kAgent, policy_of(100), 0);
  std::thread other([&] {
    t->settle_remote(ran.entry, ran.generation, true);
    t->settle_remote(refused.entry, refused.generation, false);
  });
  other.join();
  EXPECT_EQ(t->begin(key_of(1), kAgent, policy_of(100), 1 * kMs).verdict, Verdict::tombstone);
  EXPECT_EQ(t->expire(2 * kMs, 100), 1u);  // request 2, forgotten
  EXPECT_EQ(t->begin(key_of(2), kAgent, policy_of(100), 3 * kMs).verdict, Verdict::fresh);
  EXPECT_EQ(t->begin(key_of(1), kAgent, policy_of(100), 101 * kMs).verdict, Verdict::fresh);
  // A stale mark (an older generation of a reused entry) is ignored.
  t->settle_remote(ran.entry, ran.generation, true);
  EXPECT_EQ(t->begin(key_of(1), kAgent, policy_of(100), 102 * kMs).verdict, Verdict::in_flight);
}

TEST(DedupTable, BadLimitsAreRefusedWithTheFix) {
  auto t = DedupTable::create(DedupLimits{0, 1u << 20});
  ASSERT_FALSE(t);
  EXPECT_NE(t.message().find("[dedup] entries"), std::string::npos) << t.message();
}

}  // namespace
}  // namespace axon::dataplane
