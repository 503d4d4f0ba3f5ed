// The hop clock in a worker segment (layout version 4): the data plane writes its TSC
// calibration into SegmentHeader::clock, and the worker SDK stamps worker dequeue and worker
// done with that clock, not its own, so the stages that cross the process boundary subtract
// stamps of one time base. The worker runs in this process as a real sdk::Worker attached to
// a dup of a real hugepage segment's fd.
#include <unistd.h>

#include <cstdint>
#include <optional>

#include "axon/common/clock.h"
#include "axon/sdk/worker.h"
#include "axon/shm/channel.h"
#include "axon/shm/layout.h"
#include "axon/shm/segment.h"

#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

using sdk::Request;
using sdk::Worker;

class HopClockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto channel = test::create_hugepage_channel(test::small_channel_options(7));
    ASSERT_TRUE(channel) << channel.message();
    channel_.emplace(std::move(channel).value());
  }
  WorkerChannel& ch() { return *channel_; }
  std::optional<WorkerChannel> channel_;
};

TEST_F(HopClockTest, SegmentCarriesTheDataPlanesClock) {
  const TscClock& mine = process_clock();
  const HopClock& published = ch().view().header->clock;
  EXPECT_EQ(published.tsc_base, mine.tsc_base);
  EXPECT_EQ(published.ns_base, mine.ns_base);
  EXPECT_EQ(published.mult, mine.mult);
  EXPECT_EQ(published.shift, mine.shift);
  EXPECT_EQ(ch().view().header->layout_version, 4u);
}

// A clock far from CLOCK_MONOTONIC (base 2^60 ns, half a ns per tick) in the header: the worker's
// dequeue and done stamps must come from it. Stamped with the worker's own clock they would be
// near the host's uptime, many orders of magnitude below 2^60.
TEST_F(HopClockTest, WorkerStampsWithTheSegmentsClock) {
  constexpr std::uint64_t kBase = std::uint64_t{1} << 60;
  ch().view().header->clock = HopClock{rdtsc(), kBase, 1u << 31, 32};
  OutgoingRequest request;
  ASSERT_TRUE(ch().try_alloc(64, request.lease));
  request.meta.request_id = 42;
  request.meta.user_cookie = 42;
  request.length = 64;
  ASSERT_EQ(ch().try_submit_burst(&request, 1, PriorityClass::interactive), 1u);

  auto attached = Worker::attach(dup(ch().segment_fd()), ch().generation());
  ASSERT_TRUE(attached) << attached.message();
  Worker worker = std::move(attached).value();
  Request got[1];
  ASSERT_TRUE(test::wait_until([&] { return worker.receive_burst(got, 1) == 1; }));
  const std::uint64_t dequeued = got[0].meta.hop_ns[kHopWorkerDequeue];
  EXPECT_GE(dequeued, kBase);
  EXPECT_LT(dequeued, kBase + 3'600'000'000'000ull);  // within an hour of the base
  ASSERT_TRUE(worker.try_complete(got[0], worker.in_place(got[0]), 0));
  worker.flush();

  Completion done[1];
  ASSERT_TRUE(test::wait_until([&] { return ch().poll_replies(done, 1) == 1; }));
  const std::uint64_t completed = done[0].reply.hop_ns[kHopWorkerComplete];
  EXPECT_GE(completed, dequeued);
  EXPECT_LT(completed, kBase + 3'600'000'000'000ull);
  // The data plane's own enqueue stamp stays on the data plane's clock (near CLOCK_MONOTONIC).
  EXPECT_LT(done[0].reply.hop_ns[kHopEnqueue], kBase);
  ch().finish(done[0]);
}

}  // namespace
}  // namespace axon::shm
