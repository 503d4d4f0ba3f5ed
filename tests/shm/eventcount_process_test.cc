// Eventcount tests across real processes: the data plane (this process) and a forked
// worker on a hugepage segment. They check what the producer pays: no wake at all while
// the worker is busy, exactly one wake for a worker asleep in the kernel, and no lost
// wakeup over 200k messages to a worker that sleeps after every burst.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <random>
#include <string>

#include "axon/common/clock.h"
#include "axon/sdk/worker.h"
#include "axon/shm/channel.h"
#include "axon/shm/eventcount.h"
#include "axon/shm/layout.h"

#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

using namespace std::chrono_literals;
using sdk::WaitPolicy;
using sdk::Worker;
using test::Child;

class EventCountProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    auto channel = test::create_hugepage_channel(test::small_channel_options(1));
    ASSERT_TRUE(channel) << channel.message();
    channel_.emplace(std::move(channel).value());
    ASSERT_EQ(channel_->backing(), SegmentBacking::hugetlb_2m);
  }
  WorkerChannel& ch() { return *channel_; }
  EventCount& event() { return ch().view().header->request_event; }

  // Forks a worker that attaches through the inherited segment fd (as if handed over)
  // and runs `loop` on it.
  Child fork_worker(const std::function<int(Worker&)>& loop) {
    const int fd = ch().segment_fd();
    const std::uint64_t generation = ch().generation();
    return Child::fork([fd, generation, loop] {
      auto worker = Worker::attach(dup(fd), generation);
      if (!worker) {
        std::fprintf(stderr, "worker: %s\n", worker.message().c_str());
        return 2;
      }
      return loop(*worker);
    });
  }

  // Sets the stop flag and wakes the worker if it sleeps: the flag store and the notify's
  // fence pair with the worker's prepare_wait and recheck of the flag like a publish does.
  void stop_worker() {
    stop_.set();
    eventcount_notify(event());
  }

  bool wait_attached() {
    return test::wait_until(
        [&] { return ch().view().header->worker_state.load() == std::uint32_t(WorkerState::attached); });
  }

  std::optional<WorkerChannel> channel_;
  test::SharedFlag stop_;
};

// The worker sleeps with no timeout; only a notify can wake it, and each wake is the
// producer's only system call for that burst.
TEST_F(EventCountProcess, SleepingWorkerProcessIsWokenByNotify) {
  const std::atomic<bool>& stop = stop_.get();
  Child child = fork_worker([&stop](Worker& worker) {
    WaitPolicy policy;
    policy.spin_min = 1;
    policy.spin_max = 1;
    policy.sleep_timeout_ns = 0;  // no timeout
    worker.set_wait_policy(policy);
    return test::run_echo_worker(worker, stop);
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(wait_attached());

  for (std::uint64_t round = 0; round < 3; ++round) {
    const bool asleep =
        test::wait_until([&] { return event().waiters.load() == 1 && test::task_state(child.pid()) == 'S'; });
    ASSERT_TRUE(asleep) << "the worker never went to sleep (state " << test::task_state(child.pid()) << ")";
    EXPECT_EQ(event().wakes_issued.load(), round);
    test::EchoDriver driver(ch(), 100 * round + 1, 1);
    ASSERT_TRUE(test::drive({&driver}, 10s)) << "a notify did not wake the sleeping worker";
    EXPECT_EQ(event().wakes_issued.load(), round + 1) << "one burst, one sleeper: exactly one wake";
  }
  EXPECT_GE(event().sleeps.load(), 3u);
  stop_worker();
  ASSERT_TRUE(test::exited_cleanly(child));
  EXPECT_EQ(ch().view().header->worker_state.load(), std::uint32_t(WorkerState::detached));
  EXPECT_EQ(ch().free_buffers(), ch().total_buffers() - 10);
}

// A worker that polls without ever sleeping: 5000 requests cost the producer no wake.
TEST_F(EventCountProcess, BusyWorkerCostsTheProducerNoWake) {
  const std::atomic<bool>& stop = stop_.get();
  Child child = fork_worker([&stop](Worker& worker) {
    while (!stop.load(std::memory_order_acquire)) (void)test::serve_once(worker);
    worker.detach();
    return 0;
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(wait_attached());
  test::EchoDriver driver(ch(), 1, 5000);
  ASSERT_TRUE(test::drive({&driver}));
  stop_.set();
  ASSERT_TRUE(test::exited_cleanly(child));
  EXPECT_EQ(event().wakes_issued.load(), 0u);
  EXPECT_EQ(ch().stats().wakes_issued, 0u);
  EXPECT_EQ(event().sleeps.load(), 0u);
  EXPECT_EQ(event().waiters.load(), 0u);
  EXPECT_EQ(ch().stats().submitted, 5000u);
}

// The SDK's own run loop with a long spin budget: once the worker is awake and busy, a
// stream of 5000 requests costs the producer no wake, because the worker never registers
// as a waiter between bursts.
TEST_F(EventCountProcess, SpinningRunLoopCostsTheProducerNoWake) {
  const std::atomic<bool>& stop = stop_.get();
  Child child = fork_worker([&stop](Worker& worker) {
    WaitPolicy policy;
    policy.spin_min = 1u << 30;  // seconds of spinning before it would sleep
    policy.spin_max = 1u << 30;
    worker.set_wait_policy(policy);
    return test::run_echo_worker(worker, stop);
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(wait_attached());
  test::EchoDriver warm_up(ch(), 1, 64);
  ASSERT_TRUE(test::drive({&warm_up}));
  const std::uint64_t wakes_before = event().wakes_issued.load();
  const std::uint64_t sleeps_before = event().sleeps.load();

  test::EchoDriver stream(ch(), 1000, 5000);
  ASSERT_TRUE(test::drive({&stream}));
  EXPECT_EQ(event().wakes_issued.load() - wakes_before, 0u) << "the producer woke a worker that was spinning";
  EXPECT_EQ(event().sleeps.load() - sleeps_before, 0u);
  // The worker spins for seconds before it would look at the stop flag again; the
  // Child guard SIGKILLs and reaps it.
}

// 200k messages in bursts of 1..32 to a worker that spins only 1..8 iterations before
// sleeping, with no sleep timeout: a single lost wakeup stops all progress, which is
// reported after 10 s without a reply. Bursts go out after a random delay of 0 to a few
// µs (so they land in every phase of the worker finishing a burst, spinning, registering
// as a waiter and rechecking), or after waiting until the worker is asleep.
TEST_F(EventCountProcess, NoLostWakeupUnderStress) {
  constexpr std::uint64_t kMessages = 200'000;
  const std::atomic<bool>& stop = stop_.get();
  Child child = fork_worker([&stop](Worker& worker) {
    WaitPolicy policy;
    policy.spin_min = 1;
    policy.spin_max = 8;
    policy.sleep_timeout_ns = 0;
    worker.set_wait_policy(policy);
    return test::run_echo_worker(worker, stop);
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(wait_attached());

  std::minstd_rand rng(11);
  std::uint64_t sent = 0;
  std::uint64_t answered = 0;
  std::uint64_t bursts = 0;
  const std::uint32_t initial_free = ch().free_buffers();
  auto last_progress = std::chrono::steady_clock::now();
  // Polls and checks replies (they come back in order: one worker, FIFO rings).
  auto collect = [&]() -> ::testing::AssertionResult {
    Completion done[32];
    const std::uint32_t polled = ch().poll_replies(done, 32);
    for (std::uint32_t i = 0; i < polled; ++i) {
      const Completion& c = done[i];
      const bool in_place = (c.reply.flags & kFlagReplyInPlace) != 0;
      const std::uint64_t id = ~c.user_cookie;  // the channel's key for the request: ~id
      if (id != answered || c.reply.request_id != id || c.length != 16 ||
          test::find_pattern_mismatch(c.data, 16, id, in_place) != -1) {
        return ::testing::AssertionFailure() << "bad reply for request " << id << ", expected " << answered;
      }
      ch().finish(c);
      ++answered;
    }
    if (polled > 0) {
      last_progress = std::chrono::steady_clock::now();
      ch().refill_loans();
    } else if (answered < sent && std::chrono::steady_clock::now() - last_progress > 10s) {
      return ::testing::AssertionFailure()
             << "lost wakeup: no reply for 10 s with " << sent - answered << " requests queued (worker waiters "
             << event().waiters.load() << ", state " << test::task_state(child.pid()) << ")";
    }
    return ::testing::AssertionSuccess();
  };

  while (answered < kMessages) {
    // Publish a burst if there is one to send and room for it (at most 96 outstanding).
    std::uint32_t n = 1 + rng() % 32;
    if (n > kMessages - sent) n = std::uint32_t(kMessages - sent);
    if (n > 0 && sent - answered + n <= 96) {
      OutgoingRequest batch[32];
      for (std::uint32_t i = 0; i < n; ++i) {
        batch[i] = OutgoingRequest{};
        ASSERT_TRUE(ch().try_alloc(16, batch[i].lease));
        const std::uint64_t id = sent + i;
        test::fill_pattern(batch[i].lease.data, 16, id);
        batch[i].meta.request_id = id;
        batch[i].meta.user_cookie = ~id;
        batch[i].length = 16;
      }
      ASSERT_EQ(ch().try_submit_burst(batch, n), n);
      sent += n;
      ++bursts;
    }
    if (rng() % 8 == 0) {
      // Wait for every reply and for the worker to fall asleep (not a failure if it
      // does not within 50 ms).
      while (answered < sent) ASSERT_TRUE(collect());
      (void)test::wait_until([&] { return event().waiters.load() == 1; }, 50ms);
    } else {
      // Spin 0 to ~3 µs while the worker works through what it has, then collect.
      const std::uint64_t until = rdtsc() + rng() % 8000;
      while (rdtsc() < until) cpu_relax();
      ASSERT_TRUE(collect());
      if (sent - answered >= 96) {
        // No room: wait for replies, yielding to the worker if it takes long.
        for (unsigned idle = 0; sent - answered >= 96; ++idle) {
          ASSERT_TRUE(collect());
          test::backoff(idle / 64);
        }
      }
    }
  }
  const std::uint64_t wakes = event().wakes_issued.load();
  stop_worker();
  ASSERT_TRUE(test::exited_cleanly(child));
  EXPECT_EQ(ch().free_buffers(), initial_free);
  EXPECT_EQ(ch().stats().completed, kMessages);
  EXPECT_GT(event().sleeps.load(), 100u) << "the worker should have slept often";
  EXPECT_GT(wakes, 0u);
  EXPECT_LE(wakes, bursts) << "at most one wake per burst";
  RecordProperty("worker_sleeps", std::to_string(event().sleeps.load()));
  RecordProperty("wakes_issued", std::to_string(wakes));
  RecordProperty("bursts", std::to_string(bursts));
}

}  // namespace
}  // namespace axon::shm
