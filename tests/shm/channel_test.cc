// Tests of WorkerChannel, the data plane's end of a worker segment: the buffer pool and
// its classes, loans, submit/receive/complete round trips, validation of every reply a
// worker could forge, a full request ring, reclaim, and a worker rewriting the shared
// header. The worker side runs in this process, either as a real sdk::Worker attached to
// a dup of the segment fd (its own mapping, as in a worker process) or as raw ring ends
// on the channel's own mapping when a test needs to forge what a buggy worker would write.
#include "axon/shm/channel.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "axon/sdk/worker.h"
#include "axon/shm/layout.h"
#include "axon/shm/spsc_ring.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

using sdk::Request;
using sdk::Worker;

class Channel : public ::testing::Test {
 protected:
  void SetUp() override { create(test::small_channel_options(3)); }

  void create(const ChannelOptions& options) {
    auto channel = test::create_hugepage_channel(options);
    ASSERT_TRUE(channel) << channel.message();
    channel_.emplace(std::move(channel).value());
    initial_free_ = channel_->free_buffers();
  }

  WorkerChannel& ch() { return *channel_; }

  Worker attach_worker() {
    auto worker = Worker::attach(dup(ch().segment_fd()), ch().generation());
    EXPECT_TRUE(worker) << worker.message();
    return std::move(worker).value();
  }

  // Leases a buffer of `size`, fills it with the pattern for `id`, and describes it.
  OutgoingRequest make_request(std::uint64_t id, std::uint32_t size) {
    OutgoingRequest request;
    EXPECT_TRUE(ch().try_alloc(size, request.lease)) << "pool empty at id " << id;
    test::fill_pattern(request.lease.data, size, id);
    request.meta.request_id = id;
    request.meta.user_cookie = ~id;
    request.meta.agent_id = 77;
    request.meta.tenant_id = 5;
    request.length = size;
    return request;
  }

  // Whether p lies inside the channel's segment mapping.
  bool inside_segment(const void* p, std::size_t length) const {
    auto* b = static_cast<const std::byte*>(p);
    return b >= channel_->view().base && b + length <= channel_->view().base + channel_->view().size;
  }

  std::optional<WorkerChannel> channel_;
  std::uint32_t initial_free_ = 0;
};

using test::serve_once;

TEST_F(Channel, CreatesOnHugepagesWithLoansStocked) {
  EXPECT_EQ(ch().backing(), SegmentBacking::hugetlb_2m);
  EXPECT_EQ(ch().generation(), 1u);
  EXPECT_EQ(ch().worker_id(), 3u);
  const SegmentGeometry g = test::small_geometry();
  EXPECT_EQ(ch().total_buffers(), g.small_buffer_count + g.large_buffer_count);
  // Loans are taken out of the pool up front: 8 small and 2 large.
  EXPECT_EQ(ch().free_buffers(), ch().total_buffers() - 8 - 2);
  EXPECT_EQ(ch().inflight(), 0u);
  EXPECT_EQ(ch().request_room(), g.request_capacity);
  EXPECT_FALSE(ch().worker_misbehaved());

  const SegmentView& view = ch().view();
  EXPECT_EQ(view.small_loan_ring->producer.head.load(), 8u);
  EXPECT_EQ(view.large_loan_ring->producer.head.load(), 2u);
  const SlabClass small = view.header->small;
  const SlabClass large = view.header->large;
  std::set<std::uint32_t> offsets;
  for (std::uint32_t i = 0; i < 8; ++i) {
    const LoanSlot& loan = view.slots<LoanSlot>(view.small_loan_ring)[i];
    EXPECT_EQ(loan.capacity, small.buffer_size);
    EXPECT_GE(loan.buffer_offset, small.offset);
    EXPECT_LT(loan.buffer_offset, small.offset + std::uint64_t(small.count) * small.buffer_size);
    EXPECT_EQ((loan.buffer_offset - small.offset) % small.buffer_size, 0u);
    offsets.insert(loan.buffer_offset);
  }
  for (std::uint32_t i = 0; i < 2; ++i) {
    const LoanSlot& loan = view.slots<LoanSlot>(view.large_loan_ring)[i];
    EXPECT_EQ(loan.capacity, large.buffer_size);
    EXPECT_GE(loan.buffer_offset, large.offset);
    offsets.insert(loan.buffer_offset);
  }
  EXPECT_EQ(offsets.size(), 10u) << "each loan is a different buffer";
  // Refilling when nothing was used changes nothing.
  ch().refill_loans();
  EXPECT_EQ(view.small_loan_ring->producer.head.load(), 8u);
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  const ChannelStats stats = ch().stats();
  EXPECT_EQ(stats.submitted + stats.completed + stats.alloc_failed + stats.invalid_replies + stats.wakes_issued, 0u);
}

TEST_F(Channel, AllocatesFromTheRightClass) {
  BufferLease tiny, edge, over, big, too_big;
  ASSERT_TRUE(ch().try_alloc(1, tiny));
  EXPECT_EQ(tiny.capacity, 2048u);
  ASSERT_TRUE(ch().try_alloc(2048, edge));
  EXPECT_EQ(edge.capacity, 2048u);
  ASSERT_TRUE(ch().try_alloc(2049, over));
  EXPECT_EQ(over.capacity, 65536u);
  ASSERT_TRUE(ch().try_alloc(65536, big));
  EXPECT_EQ(big.capacity, 65536u);
  EXPECT_FALSE(ch().try_alloc(65537, too_big)) << "nothing holds more than the large class";
  EXPECT_EQ(ch().stats().alloc_failed, 1u);
  for (const BufferLease* lease : {&tiny, &edge, &over, &big}) {
    EXPECT_TRUE(inside_segment(lease->data, lease->capacity));
  }
  EXPECT_NE(tiny.buffer_id, edge.buffer_id);
  EXPECT_NE(over.buffer_id, big.buffer_id);
  EXPECT_EQ(ch().free_buffers(), initial_free_ - 4);

  for (const BufferLease* lease : {&tiny, &edge, &over, &big}) ch().release(*lease);
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  // Releasing twice, or a lease that was never handed out, must not inflate the pool.
  ch().release(tiny);
  ch().release(BufferLease{999'999, nullptr, 0});
  EXPECT_EQ(ch().free_buffers(), initial_free_);
}

TEST_F(Channel, PoolExhaustionFailsCountsAndReleaseRestores) {
  std::vector<BufferLease> leases;
  std::set<std::uint32_t> ids;
  BufferLease lease;
  while (ch().try_alloc(100, lease)) {
    ASSERT_TRUE(inside_segment(lease.data, lease.capacity));
    ASSERT_TRUE(ids.insert(lease.buffer_id).second) << "buffer " << lease.buffer_id << " handed out twice";
    leases.push_back(lease);
    ASSERT_LE(leases.size(), ch().total_buffers());
  }
  // A small request spills into the large class before failing: every free buffer is used.
  EXPECT_EQ(leases.size(), initial_free_);
  EXPECT_EQ(ch().free_buffers(), 0u);
  EXPECT_EQ(ch().stats().alloc_failed, 1u);
  EXPECT_FALSE(ch().try_alloc(1, lease));
  EXPECT_FALSE(ch().try_alloc(4096, lease));
  EXPECT_EQ(ch().stats().alloc_failed, 3u);

  for (const BufferLease& l : leases) ch().release(l);
  EXPECT_EQ(ch().free_buffers(), initial_free_);

  // The large class alone can run out while small buffers are free.
  leases.clear();
  while (ch().try_alloc(4096, lease)) leases.push_back(lease);
  EXPECT_EQ(leases.size(), test::small_geometry().large_buffer_count - 2u);
  EXPECT_GT(ch().free_buffers(), 0u);
  EXPECT_TRUE(ch().try_alloc(100, lease));
  ch().release(lease);
  for (const BufferLease& l : leases) ch().release(l);
  EXPECT_EQ(ch().free_buffers(), initial_free_);
}

// Submit, read in place on the worker side, answer in place and in loaned buffers, and
// get every buffer back.
TEST_F(Channel, RoundTripInPlaceAndLoanedRepliesReturnEveryBuffer) {
  Worker worker = attach_worker();
  std::vector<OutgoingRequest> requests;
  for (std::uint64_t id = 100; id < 108; ++id) requests.push_back(make_request(id, id % 4 == 1 ? 3000 : 500));
  ASSERT_EQ(ch().try_submit_burst(requests.data(), 8), 8u);
  EXPECT_EQ(ch().inflight(), 8u);
  EXPECT_EQ(ch().free_buffers(), initial_free_ - 8);

  Request received[Worker::kMaxBurst];
  ASSERT_EQ(worker.receive_burst(received, Worker::kMaxBurst), 8u);
  for (std::uint32_t i = 0; i < 8; ++i) {
    const Request& r = received[i];
    const std::uint64_t id = 100 + i;
    EXPECT_EQ(r.meta.request_id, id);
    EXPECT_EQ(r.meta.user_cookie, ~id);
    EXPECT_EQ(r.meta.agent_id, 77u);
    EXPECT_EQ(r.meta.tenant_id, 5u);
    EXPECT_EQ(r.length, requests[i].length);
    EXPECT_EQ(r.capacity, r.length > 2048 ? 65536u : 2048u);
    EXPECT_EQ((r.meta.flags & kFlagLargeBuffer) != 0, r.length > 2048);
    EXPECT_NE(r.meta.hop_ns[kHopEnqueue], 0u);
    EXPECT_NE(r.meta.hop_ns[kHopWorkerDequeue], 0u);
    EXPECT_EQ(test::find_pattern_mismatch(r.data, r.length, id, false), -1) << "request " << id << " read in place";
  }
  // Even ids in place (inverted), odd ids in a loaned buffer (copied).
  for (std::uint32_t i = 0; i < 8; ++i) {
    sdk::ReplyWriter writer(worker, received[i]);
    test::echo_handler(received[i], writer);
    ASSERT_TRUE(writer.committed());
    ASSERT_TRUE(worker.try_complete(received[i], writer.buffer(), writer.length()));
  }
  EXPECT_TRUE(worker.try_flush());
  EXPECT_EQ(worker.stats().completed, 8u);
  EXPECT_EQ(worker.stats().loan_failures, 0u);
  EXPECT_EQ(ch().view().header->requests_handled.load(), 8u);

  Completion done[16];
  ASSERT_EQ(ch().poll_replies(done, 16), 8u);
  for (std::uint32_t i = 0; i < 8; ++i) {
    const Completion& c = done[i];
    const std::uint64_t id = 100 + i;
    EXPECT_EQ(c.user_cookie, ~id) << "the caller's key comes back from the in-flight table";
    EXPECT_EQ(c.reply.request_id, id);
    EXPECT_EQ(c.status, ReplyStatus::ok);
    EXPECT_EQ(c.length, requests[i].length);
    EXPECT_NE(c.enqueue_ns, 0u);
    EXPECT_NE(c.reply.hop_ns[kHopWorkerComplete], 0u);
    EXPECT_TRUE(inside_segment(c.data, c.length));
    const bool loaned = (id & 1) != 0;
    EXPECT_EQ(c.reply_buffer != c.request_buffer, loaned) << id;
    EXPECT_EQ((c.reply.flags & kFlagLoanedBuffer) != 0, loaned) << id;
    EXPECT_EQ(test::find_pattern_mismatch(c.data, c.length, id, /*inverted=*/!loaned), -1) << "reply " << id;
    ch().finish(c);
    ch().finish(c);  // finishing twice must not free anything twice
  }
  EXPECT_EQ(ch().inflight(), 0u);
  // Used loans are replaced from the pool; after that the pool is back where it started.
  ch().refill_loans();
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  EXPECT_EQ(ch().view().small_loan_ring->producer.head.load() + ch().view().large_loan_ring->producer.head.load(),
            10u + 4u);
  const ChannelStats stats = ch().stats();
  EXPECT_EQ(stats.submitted, 8u);
  EXPECT_EQ(stats.completed, 8u);
  EXPECT_EQ(stats.invalid_replies, 0u);
  EXPECT_EQ(stats.torn_replies, 0u);
}

// Thousands of mixed requests, both sides interleaved in this thread: every reply checked
// (ids, payload, status, handler errors), and the pool whole at the end.
TEST_F(Channel, ManyMixedRequestsInterleaved) {
  Worker worker = attach_worker();
  test::EchoDriver driver(ch(), 1, 6000, /*window=*/100);
  driver.set_fail_every(97);
  for (int rounds = 0; !driver.done(); ++rounds) {
    ASSERT_LT(rounds, 1'000'000) << "no progress";
    driver.step();
    serve_once(worker);
  }
  ASSERT_FALSE(driver.failed()) << driver.error();
  EXPECT_EQ(driver.completed(), 6000u);
  EXPECT_GT(driver.loaned_replies(), 0u);
  EXPECT_GT(driver.in_place_replies(), 0u);
  EXPECT_EQ(driver.handler_errors(), 6000u / 97);  // ids 97, 194, ... 5917
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  EXPECT_EQ(ch().inflight(), 0u);
  EXPECT_EQ(ch().stats().invalid_replies, 0u);
  EXPECT_EQ(worker.stats().received, 6000u);
}

// Everything a buggy or hostile worker can put in a reply descriptor, checked against the
// private in-flight table: each forged reply is refused and counted, nothing is freed or
// crashes, and the genuine replies still complete.
TEST_F(Channel, ForgedRepliesAreRejectedAndCounted) {
  std::vector<OutgoingRequest> requests = {make_request(1, 100), make_request(2, 100)};
  ASSERT_EQ(ch().try_submit_burst(requests.data(), 2), 2u);
  const SegmentView& view = ch().view();

  // The worker's ends, on the same mapping.
  RingConsumer<Descriptor> incoming(view.request_ring, view.slots<Descriptor>(view.request_ring));
  RingProducer<Descriptor> replies(view.reply_ring, view.slots<Descriptor>(view.reply_ring));
  RingConsumer<LoanSlot> loans(view.small_loan_ring, view.slots<LoanSlot>(view.small_loan_ring));
  Descriptor a{}, b{};
  ASSERT_TRUE(incoming.try_pop(a));
  ASSERT_TRUE(incoming.try_pop(b));
  LoanSlot loan{};
  ASSERT_TRUE(loans.try_pop(loan));
  const SlabClass small = view.header->small;
  const std::uint32_t free_before = ch().free_buffers();

  auto reply_to = [](const Descriptor& request) {
    Descriptor reply = request;
    reply.flags = kFlagReplyInPlace;
    reply.length = 10;
    return reply;
  };
  std::vector<Descriptor> forged;
  Descriptor d = reply_to(a);
  d.inflight_slot = 1'000'000;  // no such buffer
  forged.push_back(d);
  d = reply_to(a);
  d.inflight_slot = ch().total_buffers() - 1;  // a free large buffer, not in flight
  forged.push_back(d);
  d = reply_to(a);
  d.inflight_slot = b.inflight_slot ^ 0x80;  // a free small buffer
  forged.push_back(d);
  d = reply_to(a);
  d.flags = kFlagLoanedBuffer;
  d.buffer_offset = b.buffer_offset;  // another request's buffer, in flight, not loaned
  forged.push_back(d);
  d.buffer_offset = loan.buffer_offset + 64;  // inside a loaned buffer but not its start
  forged.push_back(d);
  d.buffer_offset = 0;  // the segment header
  forged.push_back(d);
  d.buffer_offset = 0xffffffc0u;  // past the end of the segment
  forged.push_back(d);
  d.buffer_offset = std::uint32_t(small.offset + 200 * small.buffer_size);  // a free buffer, never loaned
  forged.push_back(d);
  d.buffer_offset = loan.buffer_offset;
  d.length = loan.capacity + 1;  // longer than the loaned buffer
  forged.push_back(d);
  d = reply_to(a);
  d.length = 2049;  // longer than the request's own buffer
  forged.push_back(d);
  d.length = 0xffffffffu;
  forged.push_back(d);
  const std::uint64_t kForged = forged.size();

  ASSERT_EQ(replies.try_push_burst(forged.data(), std::uint32_t(forged.size())), forged.size());
  Completion done[32];
  EXPECT_EQ(ch().poll_replies(done, 32), 0u);
  EXPECT_EQ(ch().stats().invalid_replies, kForged);
  EXPECT_EQ(ch().free_buffers(), free_before) << "a forged reply freed a buffer";
  EXPECT_EQ(ch().inflight(), 2u);
  EXPECT_FALSE(ch().worker_misbehaved()) << "bad contents are not bad indices";

  // The genuine replies, plus a duplicate of the first in the same burst.
  Descriptor genuine_a = reply_to(a);
  Descriptor genuine_b = reply_to(b);
  genuine_b.flags = kFlagLoanedBuffer;
  genuine_b.buffer_offset = loan.buffer_offset;
  genuine_b.length = loan.capacity;
  Descriptor burst[3] = {genuine_a, genuine_a, genuine_b};
  ASSERT_EQ(replies.try_push_burst(burst, 3), 3u);
  ASSERT_EQ(ch().poll_replies(done, 32), 2u);
  EXPECT_EQ(ch().stats().invalid_replies, kForged + 1) << "a second reply to the same request must be refused";
  EXPECT_EQ(done[0].user_cookie, ~std::uint64_t{1});
  EXPECT_EQ(done[0].length, 10u);
  EXPECT_EQ(done[1].user_cookie, ~std::uint64_t{2});
  EXPECT_EQ(done[1].length, loan.capacity);
  EXPECT_EQ(done[1].data, view.at(loan.buffer_offset));
  ch().finish(done[0]);
  ch().finish(done[1]);

  // A replay after the request finished: its buffer is free now, so still refused.
  ASSERT_TRUE(replies.try_push(genuine_a));
  EXPECT_EQ(ch().poll_replies(done, 32), 0u);
  EXPECT_EQ(ch().stats().invalid_replies, kForged + 2);

  // A reply slot whose commit stamp does not match (written half-way): counted as torn.
  ASSERT_TRUE(replies.try_push(genuine_a));
  view.slots<Descriptor>(view.reply_ring)[(view.reply_ring->producer.head.load() - 1) & 127].commit = 0;
  EXPECT_EQ(ch().poll_replies(done, 32), 0u);
  EXPECT_EQ(ch().stats().torn_replies, 1u);

  ch().refill_loans();
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  EXPECT_EQ(ch().inflight(), 0u);
}

// A worker that publishes impossible reply indices is flagged, and reclaim() still
// recovers everything.
TEST_F(Channel, ImpossibleReplyIndexMarksTheWorkerMisbehaved) {
  std::vector<OutgoingRequest> requests = {make_request(1, 10), make_request(2, 10), make_request(3, 10)};
  ASSERT_EQ(ch().try_submit_burst(requests.data(), 3), 3u);
  ch().view().reply_ring->producer.head.store(1'000'000);
  Completion done[8];
  EXPECT_EQ(ch().poll_replies(done, 8), 0u);
  EXPECT_TRUE(ch().worker_misbehaved());

  std::vector<LostRequest> lost;
  EXPECT_EQ(ch().reclaim(lost), 3u);
  std::set<std::uint64_t> ids;
  for (const LostRequest& l : lost) ids.insert(~l.user_cookie);  // cookie = ~request id
  EXPECT_EQ(ids, (std::set<std::uint64_t>{1, 2, 3}));
  EXPECT_FALSE(ch().worker_misbehaved()) << "a reformatted segment starts clean";
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  EXPECT_EQ(ch().generation(), 2u);
}

// A full request ring: the burst is cut short, the cut is counted, nothing blocks, and
// the caller still owns (and can release) the leases that were not taken.
TEST_F(Channel, FullRequestRingReturnsShortCountAndCallerKeepsLeases) {
  ChannelOptions options = test::small_channel_options(4);
  options.geometry.request_capacity = 8;
  channel_.reset();
  create(options);

  std::vector<OutgoingRequest> requests;
  for (std::uint64_t id = 0; id < 12; ++id) requests.push_back(make_request(id, 64));
  EXPECT_EQ(ch().free_buffers(), initial_free_ - 12);
  ASSERT_EQ(ch().try_submit_burst(requests.data(), 12), 8u);
  EXPECT_EQ(ch().stats().request_ring_full, 1u);
  EXPECT_EQ(ch().request_depth(), 8u);
  EXPECT_EQ(ch().request_room(), 0u);
  EXPECT_EQ(ch().try_submit_burst(requests.data() + 8, 4), 0u);
  EXPECT_EQ(ch().stats().request_ring_full, 2u);
  EXPECT_EQ(ch().stats().submitted, 8u);
  EXPECT_EQ(ch().inflight(), 8u);
  for (std::size_t i = 8; i < 12; ++i) ch().release(requests[i].lease);
  EXPECT_EQ(ch().free_buffers(), initial_free_ - 8);

  Worker worker = attach_worker();
  EXPECT_EQ(serve_once(worker), 8u);
  Completion done[16];
  ASSERT_EQ(ch().poll_replies(done, 16), 8u);
  for (std::uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(done[i].user_cookie, ~std::uint64_t{i});
    ch().finish(done[i]);
  }
  ch().refill_loans();
  EXPECT_EQ(ch().free_buffers(), initial_free_);
  // Room again.
  EXPECT_EQ(ch().request_room(), 8u);
}

// The worker is gone with requests in every state (queued, taken, replied but not yet
// polled): reclaim reports exactly the unanswered ones and returns every buffer, including
// loans the worker held, then reformats the segment for a successor.
TEST_F(Channel, ReclaimReportsUnansweredRequestsAndRestoresThePool) {
  {
    Worker worker = attach_worker();
    std::vector<OutgoingRequest> requests;
    for (std::uint64_t id = 0; id < 20; ++id) requests.push_back(make_request(id, id == 7 ? 5000 : 100));
    ASSERT_EQ(ch().try_submit_burst(requests.data(), 20), 20u);
    // The worker takes 12, answers 6 of them (2 through loans), and takes 3 more loans.
    Request taken[Worker::kMaxBurst];
    ASSERT_EQ(worker.receive_burst(taken, 12), 12u);
    for (std::uint32_t i = 0; i < 6; ++i) {
      sdk::ReplyBuffer buffer;
      if (i < 2) {
        ASSERT_TRUE(worker.try_loan(taken[i].length, buffer));
      } else {
        buffer = worker.in_place(taken[i]);
      }
      ASSERT_TRUE(worker.try_complete(taken[i], buffer, 1));
    }
    ASSERT_TRUE(worker.try_flush());
    sdk::ReplyBuffer hoarded;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(worker.try_loan(10, hoarded));
    // The data plane sees the first 4 replies before the worker dies.
    Completion done[4];
    ASSERT_EQ(ch().poll_replies(done, 4), 4u);
    for (const Completion& c : done) ch().finish(c);
  }  // the worker goes away

  std::vector<LostRequest> lost;
  EXPECT_EQ(ch().reclaim(lost), 16u);
  std::set<std::uint64_t> ids;
  for (const LostRequest& l : lost) ids.insert(~l.user_cookie);  // cookie = ~request id
  std::set<std::uint64_t> expected;
  for (std::uint64_t id = 4; id < 20; ++id) expected.insert(id);
  EXPECT_EQ(ids, expected) << "replied-but-unpolled and never-taken requests are both unanswered";
  EXPECT_EQ(lost.size(), 16u) << "each request reported once";

  EXPECT_EQ(ch().free_buffers(), initial_free_);
  EXPECT_EQ(ch().inflight(), 0u);
  EXPECT_EQ(ch().generation(), 2u);
  EXPECT_EQ(ch().stats().reclaims, 1u);
  EXPECT_EQ(ch().stats().lost_on_reclaim, 16u);
  const SegmentView& view = ch().view();
  EXPECT_EQ(view.header->worker_state.load(), std::uint32_t(WorkerState::vacant));
  EXPECT_EQ(view.request_ring->producer.head.load(), 0u);
  EXPECT_EQ(view.reply_ring->consumer.tail.load(), 0u);
  EXPECT_EQ(view.small_loan_ring->producer.head.load(), 8u);

  // A worker still holding the old generation is refused; a new one works.
  auto stale = Worker::attach(dup(ch().segment_fd()), 1);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.code(), ShmError::generation_mismatch);
  Worker successor = attach_worker();
  test::EchoDriver driver(ch(), 1000, 500);
  for (int rounds = 0; !driver.done(); ++rounds) {
    ASSERT_LT(rounds, 100'000) << "no progress";
    driver.step();
    serve_once(successor);
  }
  ASSERT_FALSE(driver.failed()) << driver.error();
  EXPECT_EQ(ch().free_buffers(), initial_free_);
}

// The shared header is writable by the worker. Rewriting the slab geometry in it must not
// make the data plane hand out, read or validate buffers outside the segment (it would
// let one worker make the data plane write payloads into arbitrary memory): the channel
// works from its own copy of the geometry and generation it formatted.
TEST_F(Channel, WorkerRewritingSlabGeometryCannotRedirectTheDataPlane) {
  OutgoingRequest request = make_request(1, 100);
  ASSERT_EQ(ch().try_submit_burst(&request, 1), 1u);
  const SegmentView& view = ch().view();
  RingConsumer<Descriptor> incoming(view.request_ring, view.slots<Descriptor>(view.request_ring));
  RingProducer<Descriptor> replies(view.reply_ring, view.slots<Descriptor>(view.reply_ring));
  Descriptor taken{};
  ASSERT_TRUE(incoming.try_pop(taken));

  // The hostile worker rewrites both slab classes.
  view.header->small.offset = std::uint64_t{1} << 40;
  view.header->small.buffer_size = 1u << 30;
  view.header->large.offset = std::uint64_t{1} << 41;
  view.header->large.buffer_size = 1u << 31;

  // Allocation still hands out buffers inside the segment, of the real sizes.
  BufferLease small_lease, large_lease;
  ASSERT_TRUE(ch().try_alloc(100, small_lease));
  EXPECT_TRUE(inside_segment(small_lease.data, small_lease.capacity));
  EXPECT_EQ(small_lease.capacity, 2048u);
  ASSERT_TRUE(ch().try_alloc(5000, large_lease));
  EXPECT_TRUE(inside_segment(large_lease.data, large_lease.capacity));
  EXPECT_EQ(large_lease.capacity, 65536u);
  EXPECT_FALSE(ch().try_alloc(1u << 20, large_lease)) << "the forged size must not widen what can be allocated";
  ch().release(small_lease);

  // A reply claiming more bytes than the real buffer holds is refused.
  Descriptor reply = taken;
  reply.flags = kFlagReplyInPlace;
  reply.length = 1u << 20;
  ASSERT_TRUE(replies.try_push(reply));
  Completion done[4];
  EXPECT_EQ(ch().poll_replies(done, 4), 0u);
  EXPECT_EQ(ch().stats().invalid_replies, 1u);
  // A genuine one completes, pointing into the segment.
  reply.length = 2048;
  ASSERT_TRUE(replies.try_push(reply));
  ASSERT_EQ(ch().poll_replies(done, 4), 1u);
  EXPECT_TRUE(inside_segment(done[0].data, done[0].length));
  EXPECT_EQ(done[0].data, request.lease.data);
  ch().finish(done[0]);

  // Nor does a rewritten generation or worker id change what the data plane hands over
  // next, or which generation a recycled segment gets.
  view.header->generation = 999;
  view.header->worker_id = 12345;
  EXPECT_EQ(ch().generation(), 1u);
  EXPECT_EQ(ch().worker_id(), 3u);
  std::vector<LostRequest> lost;
  EXPECT_EQ(ch().reclaim(lost), 0u);
  EXPECT_EQ(ch().generation(), 2u);
  EXPECT_EQ(ch().view().header->generation, 2u);
  EXPECT_EQ(ch().view().header->small.buffer_size, 2048u) << "reclaim reformats the header from the real geometry";
  EXPECT_EQ(ch().free_buffers(), initial_free_);
}

}  // namespace
}  // namespace axon::shm
