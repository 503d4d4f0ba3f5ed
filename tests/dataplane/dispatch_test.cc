// The dispatch policies, the reservation rule and the drain-rate arithmetic, alone
// (dataplane/src/dispatch.h): what each policy picks, how few sessions rendezvous hashing
// moves when a pool changes size (and how many mod-n would), and retry_after_us bounds.
#include "dispatch.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace axon::dataplane::dispatch {
namespace {

std::vector<Candidate> pool(std::uint32_t n, std::uint32_t first_slot = 0) {
  std::vector<Candidate> out;
  for (std::uint32_t i = 0; i < n; ++i) out.push_back({first_slot + i, 0});
  return out;
}

// The slot each of `keys` session keys sticks to.
std::vector<std::uint32_t> owners(const std::vector<Candidate>& candidates, std::uint32_t keys) {
  std::vector<std::uint32_t> out;
  for (std::uint64_t k = 1; k <= keys; ++k) {
    const std::uint64_t key = k * 0x100000001b3ull;  // spread-out keys, none 0
    out.push_back(candidates[pick_sticky(candidates, key)].slot);
  }
  return out;
}

double moved_share(const std::vector<std::uint32_t>& before, const std::vector<std::uint32_t>& after) {
  std::size_t moved = 0;
  for (std::size_t i = 0; i < before.size(); ++i) moved += before[i] != after[i] ? 1 : 0;
  return double(moved) / double(before.size());
}

TEST(Dispatch, EmptyPoolPicksNothing) {
  State state;
  for (auto policy :
       {model::Dispatch::sticky, model::Dispatch::p2c, model::Dispatch::jsq, model::Dispatch::round_robin}) {
    EXPECT_EQ(pick(policy, {}, 42, state), kNone);
    EXPECT_EQ(pick(policy, {}, 0, state), kNone);
  }
}

TEST(Dispatch, StickyIsStableAndSpreadsSessions) {
  const auto candidates = pool(8);
  const auto first = owners(candidates, 8000);
  EXPECT_EQ(owners(candidates, 8000), first);  // the same key, the same worker
  // The order the candidates come in does not matter.
  auto reversed = std::vector<Candidate>(candidates.rbegin(), candidates.rend());
  EXPECT_EQ(owners(reversed, 8000), first);
  std::map<std::uint32_t, int> per_slot;
  for (auto s : first) ++per_slot[s];
  ASSERT_EQ(per_slot.size(), 8u);
  for (auto [slot, count] : per_slot) {
    EXPECT_GT(count, 1000 / 2) << "slot " << slot;  // 1000 expected each
    EXPECT_LT(count, 1000 * 2) << "slot " << slot;
  }
}

// A pool of n losing one worker moves exactly that worker's sessions (~1/n); growing by one
// moves ~1/(n+1), all of them to the new worker. mod-n hashing would move most of them.
TEST(Dispatch, RendezvousMovesAboutOneNthWhenThePoolChangesByOne) {
  constexpr std::uint32_t kKeys = 20000;
  for (std::uint32_t n : {4u, 8u, 16u}) {
    const auto before = owners(pool(n), kKeys);
    // Shrink: remove slot 1.
    auto smaller = pool(n);
    smaller.erase(smaller.begin() + 1);
    const auto after_shrink = owners(smaller, kKeys);
    for (std::size_t i = 0; i < before.size(); ++i) {
      if (before[i] != 1) {
        EXPECT_EQ(after_shrink[i], before[i]) << "a session of a surviving worker moved";
      }
    }
    EXPECT_LT(moved_share(before, after_shrink), 2.0 / n) << n;
    EXPECT_GT(moved_share(before, after_shrink), 0.5 / n) << n;
    // Grow: add slot n.
    const auto after_grow = owners(pool(n + 1), kKeys);
    for (std::size_t i = 0; i < before.size(); ++i) {
      if (after_grow[i] != before[i]) {
        EXPECT_EQ(after_grow[i], n) << "a session moved to an old worker";
      }
    }
    EXPECT_LT(moved_share(before, after_grow), 2.0 / (n + 1)) << n;
    EXPECT_GT(moved_share(before, after_grow), 0.5 / (n + 1)) << n;
    // What mod-n (the dispatch this replaces) would have done on growth.
    std::vector<std::uint32_t> mod_before, mod_after;
    for (std::uint64_t k = 1; k <= kKeys; ++k) {
      mod_before.push_back(std::uint32_t(k * 0x100000001b3ull % n));
      mod_after.push_back(std::uint32_t(k * 0x100000001b3ull % (n + 1)));
    }
    EXPECT_GT(moved_share(mod_before, mod_after), 0.5) << n;
  }
}

TEST(Dispatch, StickyWithoutASessionKeyFallsBackToP2c) {
  std::vector<Candidate> c{{0, 9}, {1, 0}};
  State state;
  // With two candidates p2c compares both: the idle one wins every time.
  for (int i = 0; i < 50; ++i) EXPECT_EQ(pick(model::Dispatch::sticky, c, 0, state), 1u);
}

TEST(Dispatch, P2cTakesTheShallowerOfTwoDistinctChoices) {
  std::vector<Candidate> c{{10, 5}, {11, 3}, {12, 7}, {13, 1}};
  for (std::uint64_t r = 0; r < 2000; ++r) {
    const std::uint64_t random = r * 0x9e3779b97f4a7c15ull;
    const auto a = std::uint32_t(random % 4);
    auto b = std::uint32_t((random >> 32) % 3);
    if (b >= a) ++b;
    ASSERT_NE(a, b);
    const std::uint32_t expected = c[b].outstanding < c[a].outstanding ? b : a;
    EXPECT_EQ(pick_p2c(c, random), expected);
  }
  // The deepest worker is never chosen: it loses any pair.
  State state;
  for (int i = 0; i < 500; ++i) EXPECT_NE(pick(model::Dispatch::p2c, c, 7, state), 2u);
  std::vector<Candidate> one{{3, 100}};
  EXPECT_EQ(pick_p2c(one, 12345), 0u);
}

TEST(Dispatch, JsqTakesTheShallowestAndRotatesTies) {
  std::vector<Candidate> c{{0, 4}, {1, 2}, {2, 9}, {3, 2}};
  std::map<std::uint32_t, int> chosen;
  State state;
  for (int i = 0; i < 40; ++i) ++chosen[pick(model::Dispatch::jsq, c, 0, state)];
  EXPECT_EQ(chosen.size(), 2u);  // only the two shallowest, and both of them
  EXPECT_GT(chosen[1], 0);
  EXPECT_GT(chosen[3], 0);
  c[3].outstanding = 1;
  for (std::uint32_t start = 0; start < 8; ++start) EXPECT_EQ(pick_jsq(c, start), 3u);
}

TEST(Dispatch, RoundRobinVisitsEveryWorkerInTurn) {
  const auto c = pool(3);
  State state;
  std::vector<std::uint32_t> order;
  for (int i = 0; i < 6; ++i) order.push_back(pick(model::Dispatch::round_robin, c, 77, state));
  EXPECT_EQ(order, (std::vector<std::uint32_t>{0, 1, 2, 0, 1, 2}));
}

// Reserved interactive capacity: a background request never takes one of the last N idle
// workers; busy ones it may always queue on.
TEST(Dispatch, BackgroundNeverTakesTheLastReservedIdleWorkers) {
  Candidate out[8];
  // 4 workers, all idle, 1 reserved: background may take any of them (3 idle ones stay).
  std::vector<Candidate> idle4 = pool(4);
  EXPECT_EQ(background_candidates(idle4, 1, out), 4u);
  // 1 reserved, only one idle left: background may only take the busy ones.
  std::vector<Candidate> c{{0, 3}, {1, 0}, {2, 5}};
  ASSERT_EQ(background_candidates(c, 1, out), 2u);
  EXPECT_EQ(out[0].slot, 0u);
  EXPECT_EQ(out[1].slot, 2u);
  // Two idle, one reserved: idle ones are allowed (one stays free after this request).
  c[2].outstanding = 0;
  EXPECT_EQ(background_candidates(c, 1, out), 3u);
  // Everything idle and everything reserved: nothing may take it (BUSY reservation).
  EXPECT_EQ(background_candidates(pool(2), 2, out), 0u);
  EXPECT_EQ(background_candidates(pool(2), 5, out), 0u);
  // No reservation: every worker.
  EXPECT_EQ(background_candidates(pool(2), 0, out), 2u);
  // Interactive-only pool (all idle, reserved >= idle) still leaves busy workers to background.
  std::vector<Candidate> busy{{0, 1}, {1, 0}};
  ASSERT_EQ(background_candidates(busy, 1, out), 1u);
  EXPECT_EQ(out[0].slot, 0u);
}

TEST(Dispatch, DrainMeterMeasuresCompletionsPerSecondWhileBusy) {
  DrainMeter m;
  const std::uint64_t ms = 1'000'000;
  EXPECT_FALSE(m.sample(10 * ms, 0, 5));
  EXPECT_EQ(m.rate_per_s, 0u);
  // 100 completions in 1 ms while busy: 100000/s.
  EXPECT_TRUE(m.sample(11 * ms, 100, 5));
  EXPECT_EQ(m.rate_per_s, 100'000u);
  // Next window: 200 in 1 ms (200000/s): EWMA moves a quarter of the way.
  EXPECT_TRUE(m.sample(12 * ms, 300, 5));
  EXPECT_EQ(m.rate_per_s, 125'000u);
  // Samples inside a window do not update.
  EXPECT_FALSE(m.sample(12 * ms + 1000, 300, 5));
  // A slow worker: busy, nothing completes for 5 ms, then one request: the window spans it.
  EXPECT_FALSE(m.sample(13 * ms, 300, 5));
  EXPECT_FALSE(m.sample(15 * ms, 300, 5));
  const std::uint64_t before = m.rate_per_s;
  EXPECT_TRUE(m.sample(17 * ms, 301, 4));  // 1 in 5 ms: 200/s pulls the estimate down
  EXPECT_LT(m.rate_per_s, before);
  // A counter that went back (a new worker in the slot) starts a new window.
  const std::uint64_t kept = m.rate_per_s;
  EXPECT_FALSE(m.sample(30 * ms, 10, 3));
  EXPECT_EQ(m.rate_per_s, kept);
}

TEST(Dispatch, DrainMeterIgnoresIdleTime) {
  DrainMeter m;
  const std::uint64_t ms = 1'000'000;
  EXPECT_FALSE(m.sample(10 * ms, 0, 8));
  EXPECT_TRUE(m.sample(11 * ms, 50, 8));  // 50 in 1 ms busy: 50000/s
  ASSERT_EQ(m.rate_per_s, 50'000u);
  // It drains the rest and then sits idle for 100 ms: neither the idle time nor the
  // drained tail's window (0.2 ms busy) changes the estimate.
  EXPECT_FALSE(m.sample(11 * ms + 200'000, 58, 0));
  for (std::uint64_t t = 12; t < 112; ++t) EXPECT_FALSE(m.sample(t * ms, 58, 0));
  EXPECT_EQ(m.rate_per_s, 50'000u);
  // Work again at the same speed: the idle 100 ms did not dilute the window (50/s would show).
  EXPECT_FALSE(m.sample(112 * ms, 58, 8));
  EXPECT_TRUE(m.sample(113 * ms, 108, 8));
  EXPECT_GT(m.rate_per_s, 40'000u);
}

// Regression (bench/mixed, docs/benchmarks.md "Mixed classes"): at light load the meter read
// the arrival rate as the drain rate. One request per millisecond, each served within one
// 200 us housekeeping interval, was measured as ~1000/s, so a single outstanding request
// estimated 1 ms of queueing delay and interactive requests met BUSY queue_delay on idle
// workers. Counting only busy intervals bounds the estimate below by one interval per request.
TEST(Dispatch, DrainMeterAtLightLoadMeasuresServiceNotArrivals) {
  DrainMeter m;
  const std::uint64_t us = 1'000;
  std::uint64_t completed = 0;
  for (std::uint64_t t = 200; t <= 50'000; t += 200) {
    if (t % 1000 == 0) ++completed;  // one request arrived and was answered in (t-200, t]
    (void)m.sample(t * us, completed, 0);
  }
  ASSERT_NE(m.rate_per_s, 0u);
  EXPECT_GE(m.rate_per_s, 4'000u) << "the arrival rate (1000/s) was taken for the drain rate";
  EXPECT_LE(queue_delay_ns(1, m.rate_per_s), 250'000u);
}

TEST(Dispatch, QueueDelayAndRetryAfterFollowTheDrainRate) {
  EXPECT_EQ(queue_delay_ns(10, 0), 0u);  // unknown rate: no estimate
  EXPECT_EQ(queue_delay_ns(0, 1000), 0u);
  EXPECT_EQ(queue_delay_ns(10, 1000), 10'000'000u);  // 10 requests at 1000/s: 10 ms
  EXPECT_EQ(retry_after_us(10, 1000, 200), 10'000u);
  EXPECT_EQ(retry_after_us(10, 0, 200), 200u);  // unknown rate: the configured value
  EXPECT_EQ(retry_after_us(1, 1'000'000, 200), kMinRetryAfterUs);
  EXPECT_EQ(retry_after_us(100'000, 10, 200), kMaxRetryAfterUs);
  EXPECT_EQ(retry_after_us(64, 100'000, 200), 640u);
}

TEST(Dispatch, HighWaterDepth) {
  EXPECT_EQ(high_water_depth(1.0, 128), 128u);
  EXPECT_EQ(high_water_depth(0.5, 128), 64u);
  EXPECT_EQ(high_water_depth(0.75, 10), 8u);
  EXPECT_EQ(high_water_depth(0.001, 128), 1u);
}

}  // namespace
}  // namespace axon::dataplane::dispatch
