// Priority classes in one worker segment (issue 13): the data plane's per-class rings
// (room, depth, full, counters, reclaim of both) and the worker SDK's serving order
// (interactive first, starvation protection, earliest deadline first among background, and
// expired requests answered deadline_exceeded without reaching the caller). The worker runs
// in this process as a real sdk::Worker attached to a dup of the segment fd.
#include <stdlib.h>
#include <unistd.h>

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

constexpr std::uint64_t kBackgroundBit = 1ull << 32;  // request ids of background requests carry it

class Classes : public ::testing::Test {
 protected:
  void SetUp() override {
    ChannelOptions options = test::small_channel_options(6);
    options.geometry.request_capacity = 16;
    auto channel = test::create_hugepage_channel(options);
    ASSERT_TRUE(channel) << channel.message();
    channel_.emplace(std::move(channel).value());
    initial_free_ = channel_->free_buffers();
  }

  WorkerChannel& ch() { return *channel_; }

  Worker attach_worker(std::uint32_t background_every) {
    auto worker = Worker::attach(dup(ch().segment_fd()), ch().generation());
    EXPECT_TRUE(worker) << worker.message();
    sdk::SchedulingPolicy policy;
    policy.background_every = background_every;
    worker->set_scheduling_policy(policy);
    return std::move(worker).value();
  }

  OutgoingRequest make(std::uint64_t id, PriorityClass cls, std::uint32_t deadline_us = 0, std::uint64_t rx_ns = 0) {
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

  // Submits n requests of one class with ids first..first+n-1 (background ids carry kBackgroundBit).
  void submit(PriorityClass cls, std::uint64_t first, std::uint32_t n) {
    std::vector<OutgoingRequest> batch;
    const std::uint64_t tag = cls == PriorityClass::background ? kBackgroundBit : 0;
    for (std::uint64_t i = 0; i < n; ++i) batch.push_back(make(tag | (first + i), cls));
    ASSERT_EQ(ch().try_submit_burst(batch.data(), n, cls), n);
  }

  // Receives everything the worker hands out, answering each in place; returns the ids in order.
  std::vector<std::uint64_t> drain(Worker& worker, std::uint32_t burst = Worker::kMaxBurst) {
    std::vector<std::uint64_t> order;
    Request got[Worker::kMaxBurst];
    for (int round = 0; round < 64; ++round) {
      const std::uint32_t n = worker.receive_burst(got, burst);
      if (n == 0 && worker.background_window() == 0) break;
      for (std::uint32_t i = 0; i < n; ++i) {
        order.push_back(got[i].meta.request_id);
        EXPECT_TRUE(worker.try_complete(got[i], worker.in_place(got[i]), 0));
      }
      worker.flush();
      finish_replies();
    }
    return order;
  }

  std::vector<Completion> finish_replies() {
    std::vector<Completion> all;
    Completion done[32];
    std::uint32_t n;
    while ((n = ch().poll_replies(done, 32)) > 0) {
      for (std::uint32_t i = 0; i < n; ++i) {
        all.push_back(done[i]);
        ch().finish(done[i]);
      }
    }
    return all;
  }

  static std::string classes_of(const std::vector<std::uint64_t>& ids) {
    std::string s;
    for (std::uint64_t id : ids) s += (id & kBackgroundBit) != 0 ? 'B' : 'I';
    return s;
  }

  std::optional<WorkerChannel> channel_;
  std::uint32_t initial_free_ = 0;
};

TEST_F(Classes, LayoutHasTwoRequestRingsOfTheSameCapacity) {
  const SegmentView& v = ch().view();
  ASSERT_NE(v.background_ring, nullptr);
  EXPECT_NE(v.background_ring, v.request_ring);
  EXPECT_EQ(v.header->layout_version, kLayoutVersion);
  EXPECT_GE(kLayoutVersion, 2u);
  EXPECT_EQ(v.background_ring->geometry.capacity, v.request_ring->geometry.capacity);
  EXPECT_EQ(v.background_ring->geometry.slot_size, sizeof(Descriptor));
  EXPECT_EQ(v.request_ring_of(PriorityClass::background), v.background_ring);
  EXPECT_EQ(v.request_ring_of(PriorityClass::interactive), v.request_ring);
  // The two rings' slots do not overlap.
  const std::uint64_t a = v.request_ring->geometry.slots_offset;
  const std::uint64_t b = v.background_ring->geometry.slots_offset;
  const std::uint64_t bytes = std::uint64_t(v.request_ring->geometry.capacity) * sizeof(Descriptor);
  EXPECT_TRUE(a + bytes <= b || b + bytes <= a);
  EXPECT_EQ(priority_class_of(0), PriorityClass::interactive);
  EXPECT_EQ(priority_class_of(1), PriorityClass::background);
  EXPECT_EQ(priority_class_of(7), PriorityClass::background);
}

// Each class has its own room and depth; a full background ring refuses background only, and
// the cut is counted against that class.
TEST_F(Classes, RoomDepthAndFullAreKeptPerClass) {
  submit(PriorityClass::interactive, 0, 5);
  submit(PriorityClass::background, 0, 16);
  EXPECT_EQ(ch().request_room(PriorityClass::interactive), 11u);
  EXPECT_EQ(ch().request_room(PriorityClass::background), 0u);
  EXPECT_EQ(ch().request_room(), 11u) << "the default class is interactive";
  EXPECT_EQ(ch().request_depth(PriorityClass::interactive), 5u);
  EXPECT_EQ(ch().request_depth(PriorityClass::background), 16u);
  EXPECT_EQ(ch().request_depth(), 21u);

  OutgoingRequest extra = make(99, PriorityClass::background);
  EXPECT_EQ(ch().try_submit_burst(&extra, 1, PriorityClass::background), 0u);
  EXPECT_EQ(ch().try_submit_burst(&extra, 1, PriorityClass::interactive), 1u) << "the other ring still has room";

  const ChannelStats s = ch().stats();
  EXPECT_EQ(s.class_submitted[0], 6u);
  EXPECT_EQ(s.class_submitted[1], 16u);
  EXPECT_EQ(s.submitted, 22u);
  EXPECT_EQ(s.class_ring_full[0], 0u);
  EXPECT_EQ(s.class_ring_full[1], 1u);
  EXPECT_EQ(s.request_ring_full, 1u);
  EXPECT_EQ(ch().inflight(), 22u);
}

// Strict priority (background_every 0): every interactive request comes before any background.
TEST_F(Classes, WorkerTakesInteractiveFirst) {
  submit(PriorityClass::background, 0, 16);
  submit(PriorityClass::interactive, 0, 16);
  Worker worker = attach_worker(0);
  const std::vector<std::uint64_t> order = drain(worker);
  EXPECT_EQ(classes_of(order), std::string(16, 'I') + std::string(16, 'B'));
  // Arrival order within each class (no deadlines: FIFO).
  for (std::size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(order[i], i);
    EXPECT_EQ(order[16 + i], kBackgroundBit | i);
  }
  EXPECT_EQ(worker.stats().interactive, 16u);
  EXPECT_EQ(worker.stats().background, 16u);
  EXPECT_EQ(worker.stats().background_forced, 0u);
  EXPECT_EQ(ch().view().header->interactive_served.load(), 16u);
  EXPECT_EQ(ch().view().header->background_served.load(), 16u);
  EXPECT_EQ(ch().stats().worker_served[1], 16u);
  EXPECT_EQ(ch().inflight(), 0u);
}

// Starvation protection: with both rings full, one background request after every
// `background_every` interactive ones, whatever the burst size.
TEST_F(Classes, StarvationProtectionServesBackgroundAtTheConfiguredShare) {
  for (std::uint32_t burst : {32u, 5u, 1u}) {
    SCOPED_TRACE("burst " + std::to_string(burst));
    submit(PriorityClass::interactive, 0, 12);
    submit(PriorityClass::background, 0, 6);
    Worker worker = attach_worker(3);
    const std::vector<std::uint64_t> order = drain(worker, burst);
    EXPECT_EQ(classes_of(order), "IIIBIIIBIIIBIIIBBB");
    EXPECT_EQ(worker.stats().background_forced, 4u);
    EXPECT_EQ(ch().inflight(), 0u);
  }
}

// A forced background turn is never spent on an expired request: the SDK answers it and serves
// the next background request in the same turn.
TEST_F(Classes, ForcedTurnSkipsExpiredBackground) {
  const std::uint64_t now = monotonic_ns();
  submit(PriorityClass::interactive, 0, 4);
  std::vector<OutgoingRequest> bg = {make(kBackgroundBit | 0, PriorityClass::background, 1000, now - 50'000'000),
                                     make(kBackgroundBit | 1, PriorityClass::background),
                                     make(kBackgroundBit | 2, PriorityClass::background)};
  ASSERT_EQ(ch().try_submit_burst(bg.data(), 3, PriorityClass::background), 3u);
  Worker worker = attach_worker(2);
  const std::vector<std::uint64_t> order = drain(worker);
  EXPECT_THAT(order, ::testing::ElementsAre(0, 1, kBackgroundBit | 1, 2, 3, kBackgroundBit | 2));
  EXPECT_EQ(worker.stats().deadline_expired, 1u);
  EXPECT_EQ(worker.stats().background_forced, 2u);
  EXPECT_EQ(ch().inflight(), 0u);
}

// Without waiting background work, interactive streaks never force anything.
TEST_F(Classes, NoBackgroundMeansNoForcedTurns) {
  submit(PriorityClass::interactive, 0, 16);
  Worker worker = attach_worker(2);
  EXPECT_EQ(classes_of(drain(worker)), std::string(16, 'I'));
  EXPECT_EQ(worker.stats().background_forced, 0u);
}

// Background requests are served earliest deadline first; no deadline goes last; equal
// deadlines keep arrival order.
TEST_F(Classes, BackgroundIsEarliestDeadlineFirst) {
  const std::uint64_t rx = monotonic_ns();
  const std::uint32_t deadlines[] = {9'000'000, 0, 3'000'000, 7'000'000, 3'000'000, 0, 1'000'000, 5'000'000};
  std::vector<OutgoingRequest> batch;
  for (std::uint64_t i = 0; i < 8; ++i) batch.push_back(make(i, PriorityClass::background, deadlines[i], rx));
  ASSERT_EQ(ch().try_submit_burst(batch.data(), 8, PriorityClass::background), 8u);
  Worker worker = attach_worker(8);
  EXPECT_THAT(drain(worker), ::testing::ElementsAre(6, 2, 4, 7, 3, 0, 1, 5));
}

// EDF holds across bursts: a later-arriving earlier deadline overtakes what is still in the window.
TEST_F(Classes, EarlierDeadlineArrivingLaterOvertakesTheWindow) {
  const std::uint64_t rx = monotonic_ns();
  std::vector<OutgoingRequest> first;
  for (std::uint64_t i = 0; i < 4; ++i) first.push_back(make(i, PriorityClass::background, 8'000'000, rx));
  ASSERT_EQ(ch().try_submit_burst(first.data(), 4, PriorityClass::background), 4u);
  Worker worker = attach_worker(8);
  Request got[Worker::kMaxBurst];
  ASSERT_EQ(worker.receive_burst(got, 1), 1u);
  EXPECT_EQ(got[0].meta.request_id, 0u);
  EXPECT_EQ(worker.background_window(), 3u) << "the rest wait in the window";
  OutgoingRequest urgent = make(42, PriorityClass::background, 1'000'000, rx);
  ASSERT_EQ(ch().try_submit_burst(&urgent, 1, PriorityClass::background), 1u);
  ASSERT_EQ(worker.receive_burst(got + 1, 1), 1u);
  EXPECT_EQ(got[1].meta.request_id, 42u);
}

// A request whose deadline passed before the worker got to it never reaches the caller: the
// SDK answers it deadline_exceeded, in place, and counts it (stats and segment header).
TEST_F(Classes, ExpiredRequestIsAnsweredDeadlineExceededNotHandedOut) {
  const std::uint64_t now = monotonic_ns();
  const std::uint64_t long_ago = now - 50'000'000;  // 50 ms
  OutgoingRequest i_expired = make(1, PriorityClass::interactive, 1000, long_ago);
  OutgoingRequest i_live = make(2, PriorityClass::interactive, 10'000'000, now);
  ASSERT_EQ(ch().try_submit_burst(&i_expired, 1, PriorityClass::interactive), 1u);
  ASSERT_EQ(ch().try_submit_burst(&i_live, 1, PriorityClass::interactive), 1u);
  OutgoingRequest b_expired = make(kBackgroundBit | 3, PriorityClass::background, 2000, long_ago);
  ASSERT_EQ(ch().try_submit_burst(&b_expired, 1, PriorityClass::background), 1u);

  Worker worker = attach_worker(8);
  Request got[Worker::kMaxBurst];
  const std::uint32_t n = worker.receive_burst(got, Worker::kMaxBurst);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(got[0].meta.request_id, 2u);
  EXPECT_EQ(worker.stats().deadline_expired, 2u);
  EXPECT_EQ(worker.stats().received, 1u);
  EXPECT_EQ(ch().view().header->deadline_expired.load(), 2u);

  // Their replies are already published (receive flushed them), without the caller flushing.
  std::vector<Completion> replies = finish_replies();
  ASSERT_EQ(replies.size(), 2u);
  std::set<std::uint64_t> expired_ids;
  for (const Completion& c : replies) {
    EXPECT_EQ(c.status, ReplyStatus::deadline_exceeded);
    EXPECT_EQ(c.length, 0u);
    expired_ids.insert(c.user_cookie);
  }
  EXPECT_EQ(expired_ids, (std::set<std::uint64_t>{1, kBackgroundBit | 3}));
  EXPECT_EQ(ch().stats().worker_deadline_expired, 2u);

  ASSERT_TRUE(worker.try_complete(got[0], worker.in_place(got[0]), 0));
  worker.flush();
  ASSERT_EQ(finish_replies().size(), 1u);
  ch().refill_loans();
  EXPECT_EQ(ch().free_buffers(), initial_free_);
}

// A deadline counts from the data plane's rx stamp; without one, from the enqueue stamp.
TEST_F(Classes, DeadlineWithoutRxStampCountsFromEnqueue) {
  OutgoingRequest r = make(5, PriorityClass::interactive, 60'000'000, 0);  // 60 s from enqueue
  ASSERT_EQ(ch().try_submit_burst(&r, 1, PriorityClass::interactive), 1u);
  Worker worker = attach_worker(8);
  Request got[1];
  ASSERT_EQ(worker.receive_burst(got, 1), 1u);
  EXPECT_EQ(worker.stats().deadline_expired, 0u);
}

// The worker dies holding requests in both rings and in its EDF window: reclaim reports every
// one, and every buffer is back.
TEST_F(Classes, ReclaimReportsRequestsOfBothRingsAndTheWindow) {
  submit(PriorityClass::interactive, 0, 10);
  submit(PriorityClass::background, 0, 12);
  {
    Worker worker = attach_worker(2);
    Request got[Worker::kMaxBurst];
    // 2 interactive, 1 background (pulls all 12 into the window), 1 interactive.
    ASSERT_EQ(worker.receive_burst(got, 4), 4u);
    EXPECT_EQ(worker.background_window(), 11u);
    ASSERT_TRUE(worker.try_complete(got[0], worker.in_place(got[0]), 0));
    worker.flush();
    // "dies": the worker object goes away without answering the rest.
  }
  EXPECT_EQ(ch().request_depth(PriorityClass::background), 0u) << "the window emptied the background ring";
  EXPECT_EQ(ch().request_depth(PriorityClass::interactive), 7u);
  ASSERT_EQ(finish_replies().size(), 1u);
  std::vector<LostRequest> lost;
  EXPECT_EQ(ch().reclaim(lost), 21u);
  std::set<std::uint64_t> ids;
  for (const LostRequest& l : lost) ids.insert(l.user_cookie);
  EXPECT_EQ(ids.size(), 21u);
  EXPECT_EQ(ids.count(0), 0u) << "the answered one is not lost";
  for (std::uint64_t i = 0; i < 12; ++i) EXPECT_EQ(ids.count(kBackgroundBit | i), 1u) << i;
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  EXPECT_EQ(ch().request_depth(), 0u);
  EXPECT_EQ(ch().inflight(), 0u);
}

// AXON_BACKGROUND_EVERY sets the share at attach; garbage falls back to the default.
TEST_F(Classes, BackgroundEveryComesFromTheEnvironment) {
  ASSERT_EQ(setenv("AXON_BACKGROUND_EVERY", "3", 1), 0);
  {
    auto worker = Worker::attach(dup(ch().segment_fd()), ch().generation());
    ASSERT_TRUE(worker) << worker.message();
    EXPECT_EQ(worker->scheduling_policy().background_every, 3u);
  }
  ASSERT_EQ(setenv("AXON_BACKGROUND_EVERY", "-4", 1), 0);
  {
    auto worker = Worker::attach(dup(ch().segment_fd()), ch().generation());
    ASSERT_TRUE(worker) << worker.message();
    EXPECT_EQ(worker->scheduling_policy().background_every, sdk::kDefaultBackgroundEvery);
  }
  ASSERT_EQ(unsetenv("AXON_BACKGROUND_EVERY"), 0);
}

}  // namespace
}  // namespace axon::shm
