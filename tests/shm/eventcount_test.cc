// Tests of the shared-futex eventcount with threads on one mapping: no wake (no system
// call) without a waiter, a sleeping thread woken by notify, and no lost wakeup under a
// stress loop whose consumer falls asleep all the time. One mapping means TSan sees the
// whole sleep/wake protocol; the process versions live in eventcount_process_test.cc
// (kept apart because forking after threads ran is not something TSan supports well).
#include "axon/shm/eventcount.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>

#include "axon/common/clock.h"
#include "axon/shm/layout.h"
#include "axon/shm/spsc_ring.h"

#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

using namespace std::chrono_literals;

// A ring and its eventcount, as they sit in a segment.
struct SharedRing {
  static constexpr std::uint32_t kCapacity = 64;
  SharedRing() {
    ring.geometry.capacity = kCapacity;
    ring.geometry.slot_size = sizeof(Descriptor);
  }
  RingProducer<Descriptor> producer() { return {&ring, slots}; }
  RingConsumer<Descriptor> consumer() { return {&ring, slots}; }

  RingHeader ring{};
  EventCount event{};
  Descriptor slots[kCapacity]{};
};

pid_t this_tid() {
  return pid_t(syscall(SYS_gettid));
}

TEST(EventCount, NotifyWithoutAWaiterMakesNoWake) {
  auto shared = std::make_unique<SharedRing>();
  EventCount& ec = shared->event;
  for (int i = 0; i < 100'000; ++i) eventcount_notify(ec);
  EXPECT_EQ(ec.wakes_issued.load(), 0u);
  EXPECT_EQ(ec.epoch.load(), 0u) << "nobody waits: not even the epoch moves";
  EXPECT_EQ(ec.waiters.load(), 0u);
}

TEST(EventCount, PrepareCancelAndAMovedEpochNeverSleep) {
  auto shared = std::make_unique<SharedRing>();
  EventCount& ec = shared->event;
  // Registered, then found work: cancel.
  std::uint32_t key = eventcount_prepare_wait(ec);
  EXPECT_EQ(ec.waiters.load(), 1u);
  eventcount_cancel_wait(ec);
  EXPECT_EQ(ec.waiters.load(), 0u);

  // A notify between prepare_wait and wait must make wait return without sleeping. Run it
  // on a thread so that a bug shows as a failed bounded wait, not a hung test.
  key = eventcount_prepare_wait(ec);
  eventcount_notify(ec);
  EXPECT_EQ(ec.wakes_issued.load(), 1u);
  EXPECT_EQ(ec.epoch.load(), key + 1);
  std::atomic<bool> returned{false};
  std::thread sleeper([&] {
    eventcount_wait(ec, key, 0);
    returned.store(true);
  });
  const bool ok = test::wait_until([&] { return returned.load(); }, 10s);
  if (!ok) eventcount_notify(ec);  // it is still a registered waiter: wake it so the test ends
  sleeper.join();
  EXPECT_TRUE(ok) << "wait() slept although the epoch had moved since prepare_wait()";
  EXPECT_EQ(ec.waiters.load(), 0u) << "wait() must deregister the waiter";
}

// A consumer thread really asleep in the kernel (state S, registered as a waiter) is woken
// by one notify.
TEST(EventCount, SleepingThreadIsWokenByNotify) {
  auto shared = std::make_unique<SharedRing>();
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> got{0};
  std::thread consumer_thread([&] {
    tid.store(this_tid());
    auto consumer = shared->consumer();
    Descriptor d{};
    while (!consumer.try_pop(d)) {
      const std::uint32_t key = eventcount_prepare_wait(shared->event);
      if (!consumer.empty()) {
        eventcount_cancel_wait(shared->event);
        continue;
      }
      // A long timeout, never reached when the wake works; it only keeps a failing test
      // from hanging forever.
      eventcount_wait(shared->event, key, 30'000'000'000ull);
    }
    got.store(d.request_id);
    done.store(true);
  });

  const bool asleep = test::wait_until([&] {
    return tid.load() != 0 && shared->event.waiters.load() == 1 && shared->event.sleeps.load() >= 1 &&
           test::task_state(getpid(), tid.load()) == 'S';
  });
  EXPECT_TRUE(asleep) << "the consumer thread never went to sleep";
  EXPECT_EQ(shared->event.wakes_issued.load(), 0u);

  auto producer = shared->producer();
  Descriptor d{};
  d.request_id = 77;
  ASSERT_TRUE(producer.try_push(d));
  eventcount_notify(shared->event);
  EXPECT_TRUE(test::wait_until([&] { return done.load(); }, 10s)) << "a notify did not wake the sleeping consumer";
  consumer_thread.join();
  EXPECT_EQ(got.load(), 77u);
  EXPECT_EQ(shared->event.wakes_issued.load(), 1u);
  EXPECT_EQ(shared->event.waiters.load(), 0u);
}

// 200k messages in bursts of 1..32 to a consumer that spins only a few iterations
// before sleeping, without a timeout. After most bursts the producer stops and waits for
// the consumer to drain everything (then publishes the next burst after a random 0 to
// ~1 µs, landing in every phase of the consumer's spin/prepare/recheck/sleep sequence):
// a wakeup lost on such a burst leaves the consumer asleep with work queued and nothing
// to rescue it, which is reported after 10 s. Other bursts follow at once, keeping the
// consumer busy, or only once it is asleep.
TEST(EventCount, NoLostWakeupUnderStress) {
  constexpr std::uint64_t kMessages = 200'000;
  auto shared = std::make_unique<SharedRing>();
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> progress{0};
  std::atomic<std::uint64_t> order_error{~std::uint64_t{0}};
  std::uint64_t consumer_sleeps = 0;

  std::thread consumer_thread([&] {
    auto consumer = shared->consumer();
    std::minstd_rand rng(3);
    std::uint64_t expect = 0;
    while (expect < kMessages && !stop.load(std::memory_order_relaxed)) {
      Descriptor out[32];
      const std::uint32_t n = consumer.try_pop_burst(out, 32);
      for (std::uint32_t i = 0; i < n; ++i, ++expect) {
        if (out[i].request_id != expect) {
          order_error.store(expect);
          stop.store(true);
          return;
        }
      }
      progress.store(expect, std::memory_order_release);
      if (n > 0) continue;
      const std::uint32_t spins = rng() % 8;
      for (std::uint32_t i = 0; i < spins && consumer.empty(); ++i) cpu_relax();
      if (!consumer.empty()) continue;
      const std::uint32_t key = eventcount_prepare_wait(shared->event);
      if (!consumer.empty() || stop.load()) {
        eventcount_cancel_wait(shared->event);
        continue;
      }
      eventcount_wait(shared->event, key, 0);  // no timeout: only a notify ends this
      ++consumer_sleeps;
    }
  });

  auto producer = shared->producer();
  std::minstd_rand rng(4);
  std::uint64_t next = 0;
  std::uint64_t bursts = 0;
  bool stalled = false;
  // Waits until the consumer has taken everything published; false after 10 s without
  // any progress, i.e. a lost wakeup.
  auto drained = [&] {
    std::uint64_t seen = progress.load(std::memory_order_acquire);
    auto last_change = std::chrono::steady_clock::now();
    for (unsigned idle = 0; seen != next && !stop.load(); ++idle) {
      const std::uint64_t now_seen = progress.load(std::memory_order_acquire);
      if (now_seen != seen) {
        seen = now_seen;
        last_change = std::chrono::steady_clock::now();
        idle = 0;
      } else if (std::chrono::steady_clock::now() - last_change > 10s) {
        return false;
      }
      if (idle < 10'000) {
        cpu_relax();
      } else {
        test::backoff(idle - 10'000);
      }
    }
    return true;
  };
  while (next < kMessages && !stop.load()) {
    Descriptor batch[32];
    std::uint32_t n = 1 + rng() % 32;
    if (n > kMessages - next) n = std::uint32_t(kMessages - next);
    for (std::uint32_t i = 0; i < n; ++i) {
      batch[i] = Descriptor{};
      batch[i].request_id = next + i;
    }
    const std::uint32_t pushed = producer.try_push_burst(batch, n);
    if (pushed > 0) {
      eventcount_notify(shared->event);
      next += pushed;
      ++bursts;
    }
    const unsigned mode = rng() % 8;
    if (mode == 0 && pushed == n) continue;  // straight on: the consumer stays busy
    if (!drained()) {
      stalled = true;
      break;
    }
    if (mode == 1) {
      // Until it sleeps (not a failure if it does not within 50 ms).
      (void)test::wait_until([&] { return shared->event.waiters.load() == 1; }, 50ms);
    } else {
      const std::uint64_t until = rdtsc() + rng() % 3000;
      while (rdtsc() < until) cpu_relax();
    }
  }
  if (!stalled && !drained()) stalled = true;
  const std::uint32_t waiters = shared->event.waiters.load();
  const std::uint64_t head = shared->ring.producer.head.load();
  const std::uint64_t tail = shared->ring.consumer.tail.load();
  // Rescue a stuck consumer so the test ends and reports instead of hanging.
  stop.store(true);
  eventcount_notify(shared->event);
  consumer_thread.join();

  EXPECT_FALSE(stalled) << "lost wakeup: consumer asleep for 10 s with work queued (waiters " << waiters << ", head "
                        << head << ", tail " << tail << ", consumed " << progress.load() << ")";
  EXPECT_EQ(order_error.load(), ~std::uint64_t{0}) << "message out of order at " << order_error.load();
  EXPECT_EQ(progress.load(), kMessages);
  EXPECT_GT(consumer_sleeps, 0u) << "the consumer never slept, so nothing was tested";
  // At most one wake per burst.
  EXPECT_LE(shared->event.wakes_issued.load(), bursts);
  RecordProperty("consumer_sleeps", std::to_string(consumer_sleeps));
  RecordProperty("wakes_issued", std::to_string(shared->event.wakes_issued.load()));
  RecordProperty("bursts", std::to_string(bursts));
}

}  // namespace
}  // namespace axon::shm
