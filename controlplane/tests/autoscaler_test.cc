// Autoscaler: the queueing-delay measurement and every scale rule (sustain, cool-downs,
// hysteresis band, idle drain, min/max) against fake samples and a fake clock.
#include "autoscaler.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace axon::controlplane {
namespace {

using namespace std::chrono_literals;
using Time = std::chrono::steady_clock::time_point;

Time at(std::int64_t ms) {
  return Time{} + std::chrono::milliseconds(ms);
}

AutoscalerPolicy policy() {
  AutoscalerPolicy p;
  p.up_sustain = 1000ms;
  p.up_cooldown = 2000ms;
  p.down_idle = 5000ms;
  p.down_cooldown = 3000ms;
  p.down_ratio = 0.5;
  p.history = 4;
  return p;
}

// A pool of `size` (target) with these workers, target delay 1000 us, between 1 and 4.
PoolSample pool(std::int64_t ms, std::uint32_t size, std::vector<WorkerSample> workers) {
  PoolSample s;
  s.now = at(ms);
  s.unix_ms = 1'700'000'000'000 + ms;
  s.size = size;
  s.min = 1;
  s.max = 4;
  s.target_delay_us = 1000;
  s.workers = std::move(workers);
  return s;
}

WorkerSample worker(const std::string& id, std::uint64_t depth, std::uint64_t inflight, std::uint64_t completed) {
  return WorkerSample{id, depth, inflight, completed, std::nullopt};
}

TEST(Autoscaler, EstimatesDelayFromDepthAndDrainRate) {
  Autoscaler a(policy());
  EXPECT_FALSE(a.observe("x", pool(0, 2, {worker("w0", 0, 0, 0), worker("w1", 0, 0, 0)})));
  EXPECT_FALSE(a.view("x").delay_us) << "one sample says nothing about a rate";
  // 1000 completions in 500 ms = 2000/s; 10 queued -> 5 ms.
  a.observe("x", pool(500, 2, {worker("w0", 4, 1, 600), worker("w1", 4, 1, 400)}));
  ASSERT_TRUE(a.view("x").delay_us);
  EXPECT_EQ(*a.view("x").delay_us, 5000u);
  EXPECT_EQ(a.view("x").source, DelaySource::estimated);
  // Nothing completed while 3 wait: they waited at least since the last completion (500 ms).
  a.observe("x", pool(1000, 2, {worker("w0", 2, 1, 600), worker("w1", 0, 0, 400)}));
  EXPECT_EQ(*a.view("x").delay_us, 500'000u);
  // Idle pool: no delay.
  a.observe("x", pool(1500, 2, {worker("w0", 0, 0, 600), worker("w1", 0, 0, 400)}));
  EXPECT_EQ(*a.view("x").delay_us, 0u);
}

TEST(Autoscaler, UsesThePublishedDelayWhenEveryWorkerHasOne) {
  Autoscaler a(policy());
  auto w0 = worker("w0", 9, 9, 0);
  auto w1 = worker("w1", 9, 9, 0);
  w0.queue_delay_us = 300;
  w1.queue_delay_us = 700;
  a.observe("x", pool(0, 2, {w0, w1}));
  ASSERT_TRUE(a.view("x").delay_us);
  EXPECT_EQ(*a.view("x").delay_us, 500u);
  EXPECT_EQ(a.view("x").source, DelaySource::published);
  // One worker without it (an older data plane): the estimate instead.
  w1.queue_delay_us.reset();
  a.observe("x", pool(500, 2, {w0, w1}));
  EXPECT_EQ(a.view("x").source, DelaySource::estimated);
}

// Saturated: 2000 completions/s with 20 queued = 10 ms, ten times the 1 ms target.
std::vector<WorkerSample> hot(std::uint32_t n, std::int64_t ms) {
  std::vector<WorkerSample> out;
  for (std::uint32_t i = 0; i < n; ++i) {
    out.push_back(worker("w" + std::to_string(i), 5, 5, static_cast<std::uint64_t>(ms) * 2 / n));
  }
  return out;
}

TEST(Autoscaler, GrowsOnlyAfterTheDelayStaysAboveTargetForTheSustainPeriod) {
  Autoscaler a(policy());
  EXPECT_FALSE(a.observe("x", pool(0, 2, hot(2, 0))));
  EXPECT_FALSE(a.observe("x", pool(500, 2, hot(2, 500)))) << "above for 0 ms";
  EXPECT_FALSE(a.observe("x", pool(1000, 2, hot(2, 1000)))) << "above for 500 ms";
  auto up = a.observe("x", pool(1500, 2, hot(2, 1500)));
  ASSERT_TRUE(up) << "above for 1000 ms";
  EXPECT_EQ(up->direction, "up");
  EXPECT_EQ(up->reason, "queue_delay");
  EXPECT_EQ(up->from, 2u);
  EXPECT_EQ(up->to, 3u);
  EXPECT_EQ(up->delay_us, 10'000u);
  EXPECT_EQ(up->target_us, 1000u);
  EXPECT_EQ(up->at_ms, 1'700'000'001'500);
  EXPECT_NE(up->message.find("queueing delay 10000 us (estimated) above the target 1000 us"), std::string::npos)
      << up->message;
  ASSERT_EQ(a.view("x").decisions.size(), 1u);
  EXPECT_EQ(a.view("x").decisions.back().to, 3u);
}

TEST(Autoscaler, ASampleBelowTheTargetRestartsTheSustainPeriod) {
  Autoscaler a(policy());
  a.observe("x", pool(0, 2, hot(2, 0)));
  a.observe("x", pool(500, 2, hot(2, 500)));
  a.observe("x", pool(1000, 2, hot(2, 1000)));
  // One calm sample: 1000 completions/s, nothing queued.
  EXPECT_FALSE(a.observe("x", pool(1500, 2, {worker("w0", 0, 0, 1000), worker("w1", 0, 0, 1000)})));
  std::int64_t t = 2000;
  std::uint64_t done = 1000;
  auto busy = [&] {
    done += 1000;
    return std::vector<WorkerSample>{worker("w0", 10, 10, done), worker("w1", 10, 10, done)};
  };
  EXPECT_FALSE(a.observe("x", pool(t, 2, busy())));
  EXPECT_FALSE(a.observe("x", pool(t + 500, 2, busy())));
  EXPECT_TRUE(a.observe("x", pool(t + 1000, 2, busy())));
}

TEST(Autoscaler, GrowthWaitsForTheCooldownAndTheNewWorkerAndStopsAtMax) {
  Autoscaler a(policy());
  std::int64_t t = 0;
  for (; t <= 1500; t += 500) a.observe("x", pool(t, 2, hot(2, t)));
  ASSERT_EQ(a.view("x").decisions.size(), 1u);
  // Size 3 but only 2 attached: no further growth, however long the delay stays high.
  for (; t <= 6000; t += 500) EXPECT_FALSE(a.observe("x", pool(t, 3, hot(2, t)))) << t;
  // The third attaches: the sustain period starts over from its first sample above.
  std::optional<ScaleDecision> up;
  std::int64_t grew_at = 0;
  for (; t <= 9000 && !up; t += 500) {
    up = a.observe("x", pool(t, 3, hot(3, t)));
    grew_at = t;
  }
  ASSERT_TRUE(up);
  EXPECT_EQ(up->to, 4u);
  EXPECT_GE(grew_at, 7000);
  // At max: never above it.
  for (; t <= 20000; t += 500) EXPECT_FALSE(a.observe("x", pool(t, 4, hot(4, t))));
}

TEST(Autoscaler, UpCooldownSpacesTwoGrowths) {
  auto p = policy();
  p.up_sustain = 500ms;
  p.up_cooldown = 4000ms;
  Autoscaler a(p);
  std::vector<std::int64_t> ups;
  std::uint32_t size = 1;
  for (std::int64_t t = 0; t <= 10000; t += 500) {
    if (auto d = a.observe("x", pool(t, size, hot(size, t)))) {
      size = d->to;
      ups.push_back(t);
    }
  }
  ASSERT_GE(ups.size(), 2u);
  for (std::size_t i = 1; i < ups.size(); ++i) EXPECT_GE(ups[i] - ups[i - 1], 4000) << i;
}

TEST(Autoscaler, ShrinksByDrainingTheIdlestWorkerOnceIdleLongEnough) {
  Autoscaler a(policy());
  // w0 keeps completing a little (delay 0: nothing queued); w1 never does.
  std::optional<ScaleDecision> down;
  std::int64_t t = 0;
  for (; t <= 10000 && !down; t += 500) {
    down = a.observe("x", pool(t, 2, {worker("w0", 0, 0, static_cast<std::uint64_t>(t)), worker("w1", 0, 0, 0)}));
    if (!down) continue;
    EXPECT_GE(t, 5000) << "w1 idle for down_idle (5 s) first";
  }
  ASSERT_TRUE(down);
  EXPECT_EQ(down->direction, "down");
  EXPECT_EQ(down->reason, "idle");
  EXPECT_EQ(down->worker, "w1");
  EXPECT_EQ(down->from, 2u);
  EXPECT_EQ(down->to, 1u);
  EXPECT_NE(down->message.find("worker w1 idle for 5000 ms"), std::string::npos) << down->message;
  // At min: never below it.
  for (; t <= 30000; t += 500) EXPECT_FALSE(a.observe("x", pool(t, 1, {worker("w0", 0, 0, 0)})));
}

TEST(Autoscaler, HysteresisKeepsAnIdleWorkerWhileTheDelayIsInTheBand) {
  Autoscaler a(policy());
  // Delay 800 us (1250 completions/s on w0, one request queued): below the 1000 us target
  // (no growth) but above target * 0.5 (no shrink), however long w1 idles.
  std::uint64_t done = 0;
  for (std::int64_t t = 0; t <= 20000; t += 500) {
    done += 625;
    auto d = a.observe("x", pool(t, 2, {worker("w0", 1, 0, done), worker("w1", 0, 0, 0)}));
    EXPECT_FALSE(d) << t << ": " << (d ? d->message : "");
    if (t > 0) {
      EXPECT_EQ(*a.view("x").delay_us, 800u);
    }
  }
}

TEST(Autoscaler, DownCooldownFollowsAnyChange) {
  Autoscaler a(policy());
  std::int64_t t = 0;
  for (; t <= 1500; t += 500) a.observe("x", pool(t, 2, hot(2, t)));
  ASSERT_EQ(a.view("x").decisions.size(), 1u);
  const std::int64_t last_busy = t - 500;
  // The load stops: w1 keeps its counter (idle since its last busy sample), w2 is new.
  std::optional<ScaleDecision> down;
  std::int64_t first_down = 0;
  for (; t <= 30000 && !down; t += 500) {
    down = a.observe("x", pool(t, 3, {worker("w0", 0, 0, 3000), worker("w1", 0, 0, 1500), worker("w2", 0, 0, 0)}));
    first_down = t;
  }
  ASSERT_TRUE(down);
  EXPECT_EQ(down->worker, "w1");
  EXPECT_GE(first_down - last_busy, 5000) << "idle for down_idle";
  EXPECT_EQ(down->to, 2u);
  // w0 and w2 have idled long enough too, but the next shrink waits for down_cooldown (3 s).
  std::optional<ScaleDecision> next;
  std::int64_t second_down = 0;
  for (; t <= 40000 && !next; t += 500) {
    next = a.observe("x", pool(t, 2, {worker("w0", 0, 0, 3000), worker("w2", 0, 0, 0)}));
    second_down = t;
  }
  ASSERT_TRUE(next);
  EXPECT_EQ(second_down - first_down, 3000);
  EXPECT_EQ(next->to, 1u);
}

TEST(Autoscaler, BoundsMovedByAnOperatorAreFollowedAtOnce) {
  Autoscaler a(policy());
  auto s = pool(0, 1, {worker("w0", 0, 0, 0)});
  s.min = 3;
  s.max = 5;
  auto d = a.observe("x", s);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->reason, "min");
  EXPECT_EQ(d->to, 3u);
  EXPECT_EQ(d->direction, "up");
  s = pool(500, 6, {worker("w0", 0, 0, 0)});
  s.max = 4;
  d = a.observe("x", s);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->reason, "max");
  EXPECT_EQ(d->to, 4u);
  EXPECT_EQ(d->direction, "down");
}

TEST(Autoscaler, KeepsTheLastDecisionsAndForgets) {
  Autoscaler a(policy());  // history 4
  for (std::int64_t i = 0; i < 6; ++i) {
    auto s = pool(i * 10, 1, {});
    s.min = 2 + static_cast<std::uint32_t>(i % 2);
    a.observe("x", s);
  }
  EXPECT_EQ(a.view("x").decisions.size(), 4u);
  EXPECT_EQ(a.view("x").decisions.back().at_ms, 1'700'000'000'050);
  a.forget("x");
  EXPECT_TRUE(a.view("x").decisions.empty());
}

}  // namespace
}  // namespace axon::controlplane
