// Priority classes with a real worker process (forked, its own mapping of a hugepage
// segment): with both request rings full the worker serves interactive first, background at
// the configured share and earliest deadline first, answers an expired request
// deadline_exceeded without running its handler; and a worker killed with requests in both
// rings and in its EDF window loses none of them to the pool.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "axon/common/clock.h"
#include "axon/sdk/worker.h"
#include "axon/shm/channel.h"
#include "axon/shm/layout.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

using sdk::Request;
using sdk::Worker;
using test::Child;
using test::SharedFlag;

constexpr std::uint32_t kRing = 16;
constexpr std::uint64_t kBackgroundBit = 1ull << 32;

class ClassesProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    ChannelOptions options = test::small_channel_options(8);
    options.geometry.request_capacity = kRing;
    auto channel = test::create_hugepage_channel(options);
    ASSERT_TRUE(channel) << channel.message();
    channel_.emplace(std::move(channel).value());
    initial_free_ = channel_->free_buffers();
  }

  WorkerChannel& ch() { return *channel_; }

  OutgoingRequest make(std::uint64_t id, PriorityClass cls, std::uint32_t deadline_us, std::uint64_t rx_ns) {
    OutgoingRequest request;
    EXPECT_TRUE(ch().try_alloc(64, request.lease));
    request.meta.request_id = id;
    request.meta.user_cookie = id;
    request.meta.priority = std::uint8_t(cls);
    request.meta.deadline_us = deadline_us;
    request.meta.hop_ns[kHopRx] = rx_ns;
    request.length = 64;
    return request;
  }

  // A worker process that waits for `go`, then serves with run() until `stop`. Its handler
  // answers every request in place with status ok, so a deadline_exceeded reply can only
  // come from the SDK.
  Child start_worker(const SharedFlag& go, const SharedFlag& stop, std::uint32_t background_every,
                     bool hang_in_handler = false) {
    const int fd = ch().segment_fd();
    const std::uint64_t generation = ch().generation();
    return Child::fork([fd, generation, &go, &stop, background_every, hang_in_handler] {
      auto worker = Worker::attach(dup(fd), generation);
      if (!worker) return 2;
      sdk::SchedulingPolicy policy;
      policy.background_every = background_every;
      worker->set_scheduling_policy(policy);
      while (!go.get().load(std::memory_order_acquire)) usleep(100);
      worker->run(
          [&](const Request&, sdk::ReplyWriter& out) {
            if (hang_in_handler) {
              for (;;) pause();  // holds everything it has taken until it is killed
            }
            (void)out.in_place();
            out.commit(0);
          },
          stop.get());
      return 0;
    });
  }

  std::optional<WorkerChannel> channel_;
  std::uint32_t initial_free_ = 0;
};

TEST_F(ClassesProcess, FullRingsAreServedInClassShareAndDeadlineOrder) {
  const std::uint64_t now = monotonic_ns();
  // Interactive ring full: 16 requests without deadlines.
  std::vector<OutgoingRequest> interactive;
  for (std::uint64_t i = 0; i < kRing; ++i) interactive.push_back(make(i, PriorityClass::interactive, 0, now));
  ASSERT_EQ(ch().try_submit_burst(interactive.data(), kRing, PriorityClass::interactive), kRing);
  // Background ring full: 15 with deadlines 1..15 s in a scrambled order, one already expired.
  std::vector<OutgoingRequest> background;
  for (std::uint64_t i = 0; i < kRing - 1; ++i) {
    const std::uint32_t seconds = std::uint32_t((i * 7) % 15 + 1);  // a permutation of 1..15
    background.push_back(make(kBackgroundBit | seconds, PriorityClass::background, seconds * 1'000'000u, now));
  }
  background.insert(background.begin() + 5,
                    make(kBackgroundBit | 999, PriorityClass::background, 1000, now - 50'000'000));
  ASSERT_EQ(ch().try_submit_burst(background.data(), kRing, PriorityClass::background), kRing);
  EXPECT_EQ(ch().request_room(PriorityClass::interactive), 0u);
  EXPECT_EQ(ch().request_room(PriorityClass::background), 0u);

  SharedFlag go, stop;
  Child child = start_worker(go, stop, 4);
  ASSERT_GT(child.pid(), 0);
  go.set();

  std::vector<std::uint64_t> served;  // ok replies, in the order the worker published them
  std::vector<std::uint64_t> expired;
  ASSERT_TRUE(test::wait_until([&] {
    Completion done[32];
    const std::uint32_t n = ch().poll_replies(done, 32);
    for (std::uint32_t i = 0; i < n; ++i) {
      (done[i].status == ReplyStatus::ok ? served : expired).push_back(done[i].user_cookie);
      ch().finish(done[i]);
    }
    return served.size() + expired.size() == 2 * kRing;
  })) << served.size()
      << " served, " << expired.size() << " expired";
  stop.set();
  EXPECT_TRUE(test::exited_cleanly(child));

  EXPECT_EQ(expired, std::vector<std::uint64_t>{kBackgroundBit | 999}) << "never reached the handler";
  std::string classes;
  std::vector<std::uint64_t> background_order;
  for (std::uint64_t id : served) {
    classes += (id & kBackgroundBit) != 0 ? 'B' : 'I';
    if ((id & kBackgroundBit) != 0) background_order.push_back(id & ~kBackgroundBit);
  }
  EXPECT_EQ(classes, "IIIIBIIIIBIIIIBIIIIBBBBBBBBBBBB");
  std::vector<std::uint64_t> by_deadline;
  for (std::uint64_t s = 1; s <= 15; ++s) by_deadline.push_back(s);
  EXPECT_EQ(background_order, by_deadline) << "earliest deadline first";
  const ChannelStats s = ch().stats();
  EXPECT_EQ(s.worker_served[0], kRing);
  EXPECT_EQ(s.worker_served[1], kRing - 1);
  EXPECT_EQ(s.worker_deadline_expired, 1u);
  ch().refill_loans();
  EXPECT_EQ(ch().free_buffers(), initial_free_);
}

TEST_F(ClassesProcess, KilledWorkerHoldingBothClassesLosesNoBuffer) {
  const std::uint64_t now = monotonic_ns();
  std::vector<OutgoingRequest> interactive, background;
  for (std::uint64_t i = 0; i < kRing; ++i) {
    interactive.push_back(make(i, PriorityClass::interactive, 0, now));
    background.push_back(make(kBackgroundBit | i, PriorityClass::background, 0, now));
  }
  ASSERT_EQ(ch().try_submit_burst(interactive.data(), kRing, PriorityClass::interactive), kRing);
  ASSERT_EQ(ch().try_submit_burst(background.data(), kRing, PriorityClass::background), kRing);

  SharedFlag go, stop;
  Child child = start_worker(go, stop, 2, /*hang_in_handler=*/true);
  ASSERT_GT(child.pid(), 0);
  go.set();
  // The worker's first burst takes from both rings (2 interactive, 1 background, ...) and
  // pulls the whole background ring into its EDF window, then hangs in the handler.
  ASSERT_TRUE(test::wait_until([&] {
    return ch().view().header->background_served.load() > 0 && ch().request_depth(PriorityClass::background) == 0;
  }));
  EXPECT_LT(ch().request_depth(PriorityClass::interactive), kRing);
  child.signal(SIGKILL);
  auto status = child.wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << test::describe_status(*status);

  Completion done[32];
  EXPECT_EQ(ch().poll_replies(done, 32), 0u) << "the handler never answered";
  std::vector<LostRequest> lost;
  EXPECT_EQ(ch().reclaim(lost), 2 * kRing);
  std::set<std::uint64_t> ids;
  for (const LostRequest& l : lost) ids.insert(l.user_cookie);
  EXPECT_EQ(ids.size(), 2 * kRing) << "each reported once";
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  EXPECT_EQ(ch().request_depth(), 0u);
  EXPECT_EQ(ch().inflight(), 0u);
}

}  // namespace
}  // namespace axon::shm
