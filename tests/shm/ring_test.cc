// Unit tests of the SPSC rings (spsc_ring.h): empty, full, bursts, 64-bit wraparound past
// 2^32 and 2^33, commit stamps (torn slots, a crashed producer's half-written burst), and
// hostile peer indices. Most tests use a segment
// formatted by format_segment() on a plain aligned buffer, i.e. the exact layout the
// processes share; the hostile-index tests use a ring whose slot array is its own heap
// allocation, so ASan flags any access outside it. The two-thread stress test runs both
// ends on one mapping, so TSan sees every cross-thread access of the ring protocol.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "axon/shm/layout.h"
#include "axon/shm/segment.h"
#include "axon/shm/spsc_ring.h"

#include "gtest/gtest.h"
#include "test_support.h"

namespace axon::shm {
namespace {

constexpr std::uint64_t k2To32 = std::uint64_t{1} << 32;
constexpr std::uint64_t k2To33 = std::uint64_t{1} << 33;

// A segment formatted in ordinary process memory: the same bytes the data plane and a
// worker share, without needing a second process.
class PlainSegment {
 public:
  explicit PlainSegment(const SegmentGeometry& geometry) : size_(segment_bytes(geometry)) {
    const std::size_t rounded = (size_ + 4095) / 4096 * 4096;
    memory_ = static_cast<std::byte*>(std::aligned_alloc(4096, rounded));
    auto view = format_segment(memory_, size_, geometry, /*worker_id=*/1, /*numa_node=*/-1, SegmentBacking::shmem_4k,
                               /*generation=*/1);
    if (!view) {
      ADD_FAILURE() << "format_segment: " << view.message();
      return;
    }
    view_ = view.value();
  }
  ~PlainSegment() { std::free(memory_); }
  PlainSegment(const PlainSegment&) = delete;
  PlainSegment& operator=(const PlainSegment&) = delete;

  [[nodiscard]] const SegmentView& view() const noexcept { return view_; }
  [[nodiscard]] RingHeader* ring() const noexcept { return view_.request_ring; }
  [[nodiscard]] Descriptor* slots() const noexcept { return view_.slots<Descriptor>(view_.request_ring); }
  [[nodiscard]] RingProducer<Descriptor> producer() const noexcept { return {ring(), slots()}; }
  [[nodiscard]] RingConsumer<Descriptor> consumer() const noexcept { return {ring(), slots()}; }

  // Moves both ends (and their cached copies) to `index`, as if that many entries had
  // already passed through: the only way to reach 2^32 in a unit test.
  void start_at(std::uint64_t index) const noexcept {
    ring()->producer.head.store(index);
    ring()->producer.cached_tail = index;
    ring()->consumer.tail.store(index);
    ring()->consumer.cached_head = index;
  }

 private:
  std::size_t size_;
  std::byte* memory_ = nullptr;
  SegmentView view_{};
};

SegmentGeometry ring_geometry(std::uint32_t request_capacity) {
  SegmentGeometry g;
  g.request_capacity = request_capacity;
  g.reply_capacity = 8;
  g.loan_capacity = 2;
  g.small_buffer_size = 64;
  g.small_buffer_count = 1;
  g.large_buffer_size = 64;
  g.large_buffer_count = 1;
  return g;
}

Descriptor item(std::uint64_t id) {
  Descriptor d{};
  d.request_id = id;
  d.length = std::uint32_t(id * 3);
  d.user_cookie = ~id;
  return d;
}

TEST(Ring, EmptyRingPopFails) {
  PlainSegment segment(ring_geometry(8));
  auto consumer = segment.consumer();
  Descriptor out{};
  EXPECT_TRUE(consumer.empty());
  EXPECT_EQ(consumer.available(), 0u);
  EXPECT_FALSE(consumer.try_pop(out));
  Descriptor burst[4];
  EXPECT_EQ(consumer.try_pop_burst(burst, 4), 0u);
  EXPECT_FALSE(consumer.corrupt());
  EXPECT_EQ(segment.ring()->consumer.tail.load(), 0u);
  EXPECT_EQ(segment.ring()->consumer.torn_slots.load(), 0u);
}

TEST(Ring, FullRingRefusesCountsAndLosesNothing) {
  PlainSegment segment(ring_geometry(8));
  auto producer = segment.producer();
  auto consumer = segment.consumer();
  ASSERT_EQ(producer.capacity(), 8u);
  for (std::uint64_t id = 0; id < 8; ++id) ASSERT_TRUE(producer.try_push(item(id))) << "id " << id;
  EXPECT_EQ(producer.depth(), 8u);
  EXPECT_EQ(producer.free_slots(1), 0u);

  // Every refused call is counted, and none of them blocks or overwrites anything.
  EXPECT_FALSE(producer.try_push(item(100)));
  EXPECT_EQ(segment.ring()->producer.full_events.load(), 1u);
  EXPECT_FALSE(producer.try_push(item(101)));
  Descriptor more[3] = {item(102), item(103), item(104)};
  EXPECT_EQ(producer.try_push_burst(more, 3), 0u);
  EXPECT_EQ(segment.ring()->producer.full_events.load(), 3u);
  EXPECT_EQ(segment.ring()->producer.pushed_total.load(), 8u);
  EXPECT_FALSE(producer.corrupt());

  for (std::uint64_t id = 0; id < 8; ++id) {
    Descriptor out{};
    ASSERT_TRUE(consumer.try_pop(out)) << "id " << id;
    EXPECT_EQ(out.request_id, id);
    EXPECT_EQ(out.length, id * 3);
    EXPECT_EQ(out.user_cookie, ~id);
  }
  Descriptor out{};
  EXPECT_FALSE(consumer.try_pop(out));

  // Room again after the consumer moved on.
  EXPECT_TRUE(producer.try_push(item(8)));
  ASSERT_TRUE(consumer.try_pop(out));
  EXPECT_EQ(out.request_id, 8u);
  EXPECT_EQ(segment.ring()->consumer.torn_slots.load(), 0u);
}

TEST(Ring, BurstsReturnPartialCounts) {
  PlainSegment segment(ring_geometry(8));
  auto producer = segment.producer();
  auto consumer = segment.consumer();
  Descriptor items[10];
  for (std::uint64_t i = 0; i < 10; ++i) items[i] = item(i);

  EXPECT_EQ(producer.try_push_burst(items, 5), 5u);
  EXPECT_EQ(segment.ring()->producer.full_events.load(), 0u);
  // Only 3 of the next 5 fit: a short count, counted once, and the caller keeps the rest.
  EXPECT_EQ(producer.try_push_burst(items + 5, 5), 3u);
  EXPECT_EQ(segment.ring()->producer.full_events.load(), 1u);
  EXPECT_EQ(segment.ring()->producer.head.load(), 8u);

  Descriptor out[10];
  EXPECT_EQ(consumer.try_pop_burst(out, 4), 4u);
  for (std::uint64_t i = 0; i < 4; ++i) EXPECT_EQ(out[i].request_id, i);
  EXPECT_EQ(segment.ring()->consumer.tail.load(), 4u);
  // A burst asks for more than there is: it gets what there is.
  EXPECT_EQ(consumer.try_pop_burst(out, 10), 4u);
  for (std::uint64_t i = 0; i < 4; ++i) EXPECT_EQ(out[i].request_id, 4 + i);
  EXPECT_EQ(consumer.try_pop_burst(out, 10), 0u);

  // The two ids that did not fit go in now, in order.
  EXPECT_EQ(producer.try_push_burst(items + 8, 2), 2u);
  EXPECT_EQ(consumer.try_pop_burst(out, 10), 2u);
  EXPECT_EQ(out[0].request_id, 8u);
  EXPECT_EQ(out[1].request_id, 9u);
  EXPECT_EQ(producer.try_push_burst(items, 0), 0u);  // an empty burst is not a full event
  EXPECT_EQ(segment.ring()->producer.full_events.load(), 1u);
  EXPECT_EQ(segment.ring()->producer.pushed_total.load(), 10u);
}

class RingWrap : public ::testing::TestWithParam<std::uint64_t> {};

// Indices are 64-bit; slot = index & mask. Starting a few entries short of 2^32 and 2^33,
// push and pop across the boundary in mixed bursts and check order, stamps and slots.
TEST_P(RingWrap, CrossesTheBoundaryInOrder) {
  const std::uint64_t start = GetParam();
  PlainSegment segment(ring_geometry(8));
  segment.start_at(start);
  auto producer = segment.producer();
  auto consumer = segment.consumer();
  const std::uint32_t capacity = producer.capacity();

  std::mt19937 rng(42);
  std::uint64_t next_push = 0;
  std::uint64_t next_pop = 0;
  const std::uint64_t total = 20 * capacity;
  while (next_pop < total) {
    const std::uint32_t want = 1 + rng() % capacity;
    Descriptor batch[8];
    std::uint32_t n = 0;
    for (; n < want && next_push + n < total; ++n) batch[n] = item(start + next_push + n);
    const std::uint64_t head_before = segment.ring()->producer.head.load();
    const std::uint32_t pushed = producer.try_push_burst(batch, n);
    for (std::uint32_t i = 0; i < pushed; ++i) {
      // Each slot sits at index & mask and carries the full 64-bit stamp index + 1.
      const std::uint64_t index = head_before + i;
      const Descriptor& slot = segment.slots()[index & (capacity - 1)];
      ASSERT_EQ(slot.commit, index + 1) << "stamp truncated at index " << index;
      ASSERT_EQ(slot.request_id, start + next_push + i);
    }
    next_push += pushed;
    ASSERT_LE(producer.depth(), capacity);

    Descriptor out[8];
    const std::uint32_t popped = consumer.try_pop_burst(out, 1 + rng() % capacity);
    for (std::uint32_t i = 0; i < popped; ++i) {
      ASSERT_EQ(out[i].request_id, start + next_pop + i) << "out of order after " << next_pop;
    }
    next_pop += popped;
  }
  EXPECT_EQ(segment.ring()->producer.head.load(), start + total);
  EXPECT_EQ(segment.ring()->consumer.tail.load(), start + total);
  EXPECT_GT(start + total, (start | (k2To32 - 1)) + 1) << "the run must cross a 2^32 multiple";
  EXPECT_FALSE(producer.corrupt());
  EXPECT_FALSE(consumer.corrupt());
  EXPECT_EQ(segment.ring()->consumer.torn_slots.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(NearPowersOfTwo, RingWrap,
                         ::testing::Values(k2To32 - 3, k2To32 - 1, k2To33 - 3, 3 * k2To32 - 5),
                         [](const ::testing::TestParamInfo<std::uint64_t>& param) {
                           return "start_" + std::to_string(param.param);
                         });

// A full ring right at the boundary: full/empty arithmetic must not depend on the low
// 32 bits.
TEST(Ring, FullAndEmptyAcrossTheBoundary) {
  PlainSegment segment(ring_geometry(8));
  segment.start_at(k2To32 - 4);
  auto producer = segment.producer();
  auto consumer = segment.consumer();
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(producer.try_push(item(i)));
  EXPECT_EQ(segment.ring()->producer.head.load(), k2To32 + 4);
  EXPECT_FALSE(producer.try_push(item(99)));
  EXPECT_EQ(producer.depth(), 8u);
  Descriptor out[8];
  EXPECT_EQ(consumer.try_pop_burst(out, 8), 8u);
  for (std::uint64_t i = 0; i < 8; ++i) EXPECT_EQ(out[i].request_id, i);
  EXPECT_TRUE(consumer.empty());
  EXPECT_FALSE(consumer.try_pop(out[0]));
  EXPECT_FALSE(producer.corrupt());
  EXPECT_FALSE(consumer.corrupt());
}

// A slot published without a matching commit stamp (a producer that crashed mid-write,
// or a forged index) is skipped and counted, and the slots around it still arrive.
TEST(Ring, WrongCommitStampIsSkippedAndCounted) {
  PlainSegment segment(ring_geometry(8));
  segment.start_at(k2To32 - 2);
  auto producer = segment.producer();
  auto consumer = segment.consumer();
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(producer.try_push(item(i)));
  // Item 1 lies at index 2^32 - 1; stamp it as if it were written one lap earlier.
  Descriptor& torn = segment.slots()[(k2To32 - 1) & 7];
  ASSERT_EQ(torn.request_id, 1u);
  torn.commit -= 8;
  // Item 3 at index 2^32 + 1: a stamp that would match only if truncated to 32 bits.
  Descriptor& truncated = segment.slots()[(k2To32 + 1) & 7];
  ASSERT_EQ(truncated.request_id, 3u);
  truncated.commit = (k2To32 + 2) & 0xffffffffu;

  Descriptor out[8];
  EXPECT_EQ(consumer.try_pop_burst(out, 8), 2u);
  EXPECT_EQ(out[0].request_id, 0u);
  EXPECT_EQ(out[1].request_id, 2u);
  EXPECT_EQ(segment.ring()->consumer.torn_slots.load(), 2u);
  // Torn slots are consumed too: the ring moves on instead of getting stuck on them.
  EXPECT_EQ(segment.ring()->consumer.tail.load(), k2To32 + 2);
  EXPECT_TRUE(consumer.empty());
  EXPECT_FALSE(consumer.corrupt());

  // The visitor form reports the slots consumed, torn ones included.
  ASSERT_TRUE(producer.try_push(item(10)));
  ASSERT_TRUE(producer.try_push(item(11)));
  segment.slots()[(k2To32 + 2) & 7].commit = 0;
  std::vector<std::uint64_t> seen;
  EXPECT_EQ(consumer.try_pop_burst(8, [&](const Descriptor& d) { seen.push_back(d.request_id); }), 2u);
  EXPECT_EQ(seen, std::vector<std::uint64_t>{11});
  EXPECT_EQ(segment.ring()->consumer.torn_slots.load(), 3u);
}

// A crashed producer: bodies written, no stamp, head not published. Nothing of it is ever
// handed out; its restarted successor's burst over the same slots arrives whole.
TEST(Ring, ACrashedProducersHalfBurstIsNeverHandedOut) {
  PlainSegment segment(ring_geometry(8));
  segment.start_at(k2To32 - 2);
  auto consumer = segment.consumer();
  for (std::uint64_t i = 0; i < 4; ++i) {
    Descriptor& slot = segment.slots()[(k2To32 - 2 + i) & 7];
    ring_detail::copy_body(slot, item(100 + i));
  }
  Descriptor out[8];
  for (std::uint32_t poll = 0; poll < 2 * RingConsumer<Descriptor>::kLookEvery; ++poll) {
    ASSERT_FALSE(consumer.try_pop(out[0]));
    ASSERT_EQ(consumer.try_pop_burst(out, 8), 0u);
    ASSERT_EQ(consumer.available(), 0u);
  }
  auto restarted = segment.producer();
  Descriptor burst[2] = {item(0), item(1)};
  ASSERT_EQ(restarted.try_push_burst(burst, 2), 2u);
  EXPECT_EQ(consumer.try_pop_burst(out, 8), 2u);
  EXPECT_EQ(out[0].request_id, 0u);
  EXPECT_EQ(out[1].request_id, 1u);
  EXPECT_FALSE(consumer.try_pop(out[0]));
  EXPECT_EQ(segment.ring()->consumer.torn_slots.load(), 0u);
}

TEST(Ring, LoanSlotRingWorksLikeTheDescriptorRing) {
  PlainSegment segment(ring_geometry(8));
  RingHeader* ring = segment.view().small_loan_ring;
  ring->producer.head.store(k2To32 - 1);
  ring->producer.cached_tail = k2To32 - 1;
  ring->consumer.tail.store(k2To32 - 1);
  ring->consumer.cached_head = k2To32 - 1;
  RingProducer<LoanSlot> producer(ring, segment.view().slots<LoanSlot>(ring));
  RingConsumer<LoanSlot> consumer(ring, segment.view().slots<LoanSlot>(ring));
  ASSERT_EQ(producer.capacity(), 2u);
  EXPECT_TRUE(producer.try_push(LoanSlot{0, 128, 64}));
  EXPECT_TRUE(producer.try_push(LoanSlot{0, 192, 64}));
  EXPECT_FALSE(producer.try_push(LoanSlot{0, 256, 64}));
  LoanSlot out{};
  ASSERT_TRUE(consumer.try_pop(out));
  EXPECT_EQ(out.buffer_offset, 128u);
  ASSERT_TRUE(consumer.try_pop(out));
  EXPECT_EQ(out.buffer_offset, 192u);
  EXPECT_EQ(out.commit, k2To32 + 1);
  EXPECT_FALSE(consumer.try_pop(out));
}

// A ring whose slot array is exactly `capacity` slots of its own heap block: under ASan
// any read or write outside it is reported.
template <typename Slot>
struct HeapRing {
  explicit HeapRing(std::uint32_t capacity) : header(std::make_unique<RingHeader>()), slots(new Slot[capacity]{}) {
    header->geometry.capacity = capacity;
    header->geometry.slot_size = sizeof(Slot);
  }
  void start_at(std::uint64_t index) const noexcept {
    header->producer.head.store(index);
    header->producer.cached_tail = index;
    header->consumer.tail.store(index);
    header->consumer.cached_head = index;
  }
  std::unique_ptr<RingHeader> header;
  std::unique_ptr<Slot[]> slots;
  RingProducer<Slot> producer() { return {header.get(), slots.get()}; }
  RingConsumer<Slot> consumer() { return {header.get(), slots.get()}; }
};

// The consumer's peer (the producer) publishes a head more than `capacity` ahead.
TEST(RingHostile, HeadFarAheadMarksConsumerCorrupt) {
  HeapRing<Descriptor> ring(8);
  ring.start_at(1000);
  auto consumer = ring.consumer();
  ring.header->producer.head.store(1000 + 9);
  Descriptor out[16];
  EXPECT_EQ(consumer.try_pop_burst(out, 16), 0u);
  EXPECT_TRUE(consumer.corrupt());
  EXPECT_EQ(ring.header->consumer.tail.load(), 1000u) << "a corrupt ring must not be consumed";
  // Sticky: even a head that looks sane again is not trusted.
  ring.header->producer.head.store(1001);
  EXPECT_FALSE(consumer.try_pop(out[0]));
  EXPECT_EQ(consumer.try_pop_burst(4, [](const Descriptor&) { ADD_FAILURE() << "visited a corrupt ring"; }), 0u);

  HeapRing<Descriptor> far(8);
  auto far_consumer = far.consumer();
  far.header->producer.head.store(~std::uint64_t{0});
  EXPECT_EQ(far_consumer.try_pop_burst(out, 16), 0u);
  EXPECT_TRUE(far_consumer.corrupt());
}

// The producer moved its head backwards, behind the consumer's tail.
TEST(RingHostile, HeadBehindTailMarksConsumerCorrupt) {
  HeapRing<Descriptor> ring(8);
  ring.start_at(1000);
  auto consumer = ring.consumer();
  ring.header->producer.head.store(999);
  Descriptor out{};
  EXPECT_FALSE(consumer.try_pop(out));
  EXPECT_TRUE(consumer.corrupt());
  EXPECT_EQ(consumer.available(), 0u);
  EXPECT_EQ(ring.header->consumer.tail.load(), 1000u);
}

// The producer's peer (the consumer) publishes a tail beyond the head.
TEST(RingHostile, TailAheadOfHeadMarksProducerCorrupt) {
  HeapRing<Descriptor> ring(8);
  ring.start_at(k2To32 - 4);
  auto producer = ring.producer();
  // Fill it, so the producer's cached view is exhausted and it must look at the tail.
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(producer.try_push(item(i)));
  ring.header->consumer.tail.store(k2To32 + 4 + 3);
  EXPECT_FALSE(producer.try_push(item(8)));
  EXPECT_TRUE(producer.corrupt());
  EXPECT_EQ(ring.header->producer.head.load(), k2To32 + 4) << "nothing may be written to a corrupt ring";
  // Sticky, and no slot was overwritten.
  ring.header->consumer.tail.store(k2To32 + 4);
  Descriptor burst[4] = {item(20), item(21), item(22), item(23)};
  EXPECT_EQ(producer.try_push_burst(burst, 4), 0u);
  for (std::uint32_t i = 0; i < 8; ++i) EXPECT_LT(ring.slots[i].request_id, 8u);
}

// The consumer's tail is more than `capacity` behind the head (it jumped backwards).
TEST(RingHostile, TailFarBehindMarksProducerCorrupt) {
  HeapRing<Descriptor> ring(8);
  ring.start_at(5000);
  auto producer = ring.producer();
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(producer.try_push(item(i)));
  ring.header->consumer.tail.store(5000 - 1);
  EXPECT_EQ(producer.free_slots(1), 0u);
  EXPECT_TRUE(producer.corrupt());
  EXPECT_FALSE(producer.try_push(item(8)));
  EXPECT_EQ(ring.header->producer.head.load(), 5008u);
}

// The peer can also scribble over the other side's cached copies and over the slots
// themselves (they all live in shared memory). Whatever it writes, neither end may touch
// memory outside its slot array or return more than it was asked for; ASan checks the
// first, the assertions the second.
TEST(RingHostile, GarbageIndicesNeverLeaveTheSlotArray) {
  std::mt19937_64 rng(7);
  auto hostile = [&rng]() -> std::uint64_t {
    switch (rng() % 5) {
      case 0: return rng();
      case 1: return rng() % 64;
      case 2: return ~std::uint64_t{0} - rng() % 16;
      case 3: return k2To32 + rng() % 32 - 16;
      default: return rng() >> 40;
    }
  };
  for (int round = 0; round < 2000; ++round) {
    HeapRing<Descriptor> ring(8);
    auto producer = ring.producer();
    auto consumer = ring.consumer();
    ring.header->producer.head.store(hostile());
    ring.header->producer.cached_tail = hostile();
    ring.header->consumer.tail.store(hostile());
    ring.header->consumer.cached_head = hostile();
    for (std::uint32_t i = 0; i < 8; ++i) ring.slots[i].commit = hostile();
    for (int op = 0; op < 8; ++op) {
      Descriptor batch[16];
      for (std::uint64_t i = 0; i < 16; ++i) batch[i] = item(i);
      const std::uint32_t n = 1 + std::uint32_t(rng() % 16);
      EXPECT_LE(producer.try_push_burst(batch, n), n);
      Descriptor out[16];
      const std::uint32_t max = 1 + std::uint32_t(rng() % 16);
      EXPECT_LE(consumer.try_pop_burst(out, max), max);
      if (rng() % 3 == 0) ring.header->consumer.cached_head = hostile();
      if (rng() % 3 == 0) ring.header->producer.cached_tail = hostile();
    }
  }
}

// Both ends in two threads over one mapping, crossing 2^32 concurrently, with bursts and
// single pops mixed and the consumer's view replaced now and then: every item arrives
// exactly once and in order, and none is counted torn. Under TSan this checks the release/acquire protocol
// itself (the processes-based tests cannot: TSan does not see the other process).
TEST(Ring, TwoThreadStressCrossing2To32InOrder) {
  // A ring large enough that a thread descheduled on a loaded 2-vCPU machine leaves its
  // peer a lot of work, rather than one full/empty handoff per time slice.
  PlainSegment segment(ring_geometry(1024));
  segment.start_at(k2To32 - 5000);
  constexpr std::uint64_t kItems = 200'000;
  std::atomic<bool> abort{false};
  std::atomic<std::uint64_t> consumed{0};
  std::uint64_t first_error_at = ~std::uint64_t{0};
  std::uint64_t error_got = 0;

  std::thread consumer_thread([&] {
    auto consumer = segment.consumer();
    std::mt19937 rng(2);
    std::uint64_t expect = 0;
    unsigned idle = 0;
    while (expect < kItems && !abort.load(std::memory_order_relaxed)) {
      // Now and then a new view, as after a consumer restart: it must go on where the old
      // one stopped, inside a producer's burst included, with nothing lost or counted torn.
      if (rng() % 64 == 0) consumer = segment.consumer();
      Descriptor out[32];
      const std::uint32_t got = consumer.try_pop_burst(out, 1 + rng() % 32);
      for (std::uint32_t i = 0; i < got; ++i, ++expect) {
        if (out[i].request_id != expect || out[i].user_cookie != ~expect) {
          first_error_at = expect;
          error_got = out[i].request_id;
          abort.store(true);
          return;
        }
      }
      consumed.store(expect, std::memory_order_relaxed);
      if (got == 0)
        test::backoff(idle++ % 64);  // yield only: never sleep in the stress
      else
        idle = 0;
    }
  });

  auto producer = segment.producer();
  std::mt19937 rng(1);
  std::uint64_t next = 0;
  unsigned idle = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (next < kItems && !abort.load()) {
    Descriptor batch[32];
    std::uint32_t n = 1 + rng() % 32;
    if (n > kItems - next) n = std::uint32_t(kItems - next);
    for (std::uint32_t i = 0; i < n; ++i) batch[i] = item(next + i);
    const std::uint32_t pushed = producer.try_push_burst(batch, n);
    next += pushed;
    if (pushed == 0) {
      test::backoff(idle++ % 64);
      if (std::chrono::steady_clock::now() > deadline) {
        abort.store(true);
        break;
      }
    } else {
      idle = 0;
    }
  }
  // Bounded wait for the consumer to finish.
  EXPECT_TRUE(test::wait_until([&] { return consumed.load() == kItems || abort.load(); }, std::chrono::seconds(60)))
      << "consumer stuck at " << consumed.load() << " of " << kItems;
  abort.store(true);
  consumer_thread.join();
  EXPECT_EQ(first_error_at, ~std::uint64_t{0}) << "expected id " << first_error_at << ", got " << error_got;
  EXPECT_EQ(consumed.load(), kItems);
  EXPECT_EQ(segment.ring()->producer.head.load(), k2To32 - 5000 + kItems);
  EXPECT_EQ(segment.ring()->consumer.torn_slots.load(), 0u);
}

}  // namespace
}  // namespace axon::shm
