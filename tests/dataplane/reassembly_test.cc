// The reassembly table alone (dataplane/src/reassembly.h): segments in any order, duplicates,
// disagreeing and impossible segments, the timeout, the lcore and tenant memory bounds, and
// that every path gives its memory back.
#include "reassembly.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

namespace axon::dataplane {
namespace {

using Verdict = ReassemblyTable::Verdict;
constexpr std::uint64_t kMs = 1'000'000;

std::unique_ptr<ReassemblyTable> make_table(ReassemblyLimits limits = {}) {
  auto table = ReassemblyTable::create(limits);
  EXPECT_TRUE(table) << table.message();
  return std::move(table).value();
}

SegmentKey key_of(std::uint64_t request_id, std::uint32_t tenant = 1, std::uint16_t port = 5000) {
  SegmentKey key;
  key.tenant_id = tenant;
  key.src_port = port;
  key.src_addr[15] = 7;
  key.request_id = request_id;
  return key;
}

std::vector<std::uint8_t> message_of(std::uint32_t length, std::uint8_t seed = 1) {
  std::vector<std::uint8_t> out(length);
  for (std::uint32_t i = 0; i < length; ++i) out[i] = std::uint8_t(i * 31 + seed + i / 251);
  return out;
}

// A message cut by the §6 rule: `count` segments of S = ceil(len / count), the last the rest.
struct Segmented {
  protocol::Header header;
  std::vector<std::uint8_t> bytes;
  std::uint32_t size = 0;

  Segmented(std::uint32_t length, std::uint16_t count, std::uint8_t seed = 1) : bytes(message_of(length, seed)) {
    header.tenant_id = 1;
    header.agent_id = 42;
    header.request_id = 9;
    header.segment_count = count;
    header.message_len = length;
    size = (length + count - 1) / count;
  }
  protocol::Header header_of(std::uint16_t index) const {
    protocol::Header h = header;
    h.segment_index = index;
    h.payload_len = std::uint16_t(payload_of(index).size());
    return h;
  }
  std::span<const std::uint8_t> payload_of(std::uint16_t index) const {
    const std::uint32_t offset = index * size;
    return {bytes.data() + offset, std::min<std::size_t>(size, bytes.size() - offset)};
  }
};

ReassemblyTable::Outcome add(ReassemblyTable& t, const Segmented& m, std::uint16_t index, std::uint64_t now = 0,
                             const SegmentKey& key = key_of(9)) {
  return t.add(key, m.header_of(index), m.payload_of(index), now);
}

std::vector<std::uint8_t> take(ReassemblyTable& t, std::uint32_t entry) {
  std::vector<std::uint8_t> out(t.header(entry).message_len);
  t.copy_out(entry, out.data());
  t.release(entry);
  return out;
}

TEST(Reassembly, SegmentsInAnyOrderMakeTheWholeMessage) {
  auto t = make_table();
  Segmented m(65536, 47);
  std::vector<std::uint16_t> order(47);
  std::iota(order.begin(), order.end(), std::uint16_t(0));
  std::shuffle(order.begin(), order.end(), std::mt19937(3));
  for (std::size_t i = 0; i + 1 < order.size(); ++i) EXPECT_EQ(add(*t, m, order[i]).verdict, Verdict::held);
  EXPECT_EQ(t->messages_in_use(), 1u);
  EXPECT_EQ(t->bytes_in_use(), 65536u);
  auto last = add(*t, m, order.back());
  ASSERT_EQ(last.verdict, Verdict::complete);
  EXPECT_EQ(t->header(last.entry).segment_index, 0);
  EXPECT_EQ(t->header(last.entry).agent_id, 42u);
  EXPECT_EQ(take(*t, last.entry), m.bytes);
  EXPECT_EQ(t->messages_in_use(), 0u);
  EXPECT_EQ(t->bytes_in_use(), 0u);
}

TEST(Reassembly, UnevenLastSegmentAndSmallMessages) {
  auto t = make_table();
  for (std::uint32_t length : {2u, 3u, 4097u, 3000u, 1473u * 3 + 1}) {
    for (std::uint16_t count : {std::uint16_t(2), std::uint16_t(3)}) {
      if (length < count) continue;
      Segmented m(length, count, std::uint8_t(length));
      ReassemblyTable::Outcome out;
      for (std::uint16_t i = count; i-- > 0;) out = add(*t, m, i);
      ASSERT_EQ(out.verdict, Verdict::complete) << length << "/" << count;
      EXPECT_EQ(take(*t, out.entry), m.bytes) << length << "/" << count;
    }
  }
  EXPECT_EQ(t->bytes_in_use(), 0u);
}

TEST(Reassembly, DuplicatesAreIgnored) {
  auto t = make_table();
  Segmented m(5000, 4);
  EXPECT_EQ(add(*t, m, 1).verdict, Verdict::held);
  EXPECT_EQ(add(*t, m, 1).verdict, Verdict::duplicate);
  EXPECT_EQ(add(*t, m, 0).verdict, Verdict::held);
  EXPECT_EQ(add(*t, m, 2).verdict, Verdict::held);
  EXPECT_EQ(add(*t, m, 0).verdict, Verdict::duplicate);
  auto out = add(*t, m, 3);
  ASSERT_EQ(out.verdict, Verdict::complete);
  EXPECT_EQ(take(*t, out.entry), m.bytes);
}

TEST(Reassembly, DisagreeingSegmentFreesThePartialMessage) {
  auto t = make_table();
  Segmented m(5000, 4);
  for (int field = 0; field < 4; ++field) {
    Segmented other(5000, 4);
    if (field == 0) other = Segmented(5001, 4);
    if (field == 1) other = Segmented(5000, 5);
    if (field == 2) other.header.agent_id = 43;
    if (field == 3) other.header.deadline_us = 10;
    EXPECT_EQ(add(*t, m, 0).verdict, Verdict::held) << field;
    EXPECT_GT(t->bytes_in_use(), 0u);
    auto out = add(*t, other, 1);
    EXPECT_EQ(out.verdict, Verdict::mismatch) << field;
    EXPECT_TRUE(out.freed);
    EXPECT_EQ(t->messages_in_use(), 0u) << field;
    EXPECT_EQ(t->bytes_in_use(), 0u) << field;
  }
}

TEST(Reassembly, ImpossibleLengthsAreRefusedAndFreeThePartialMessage) {
  auto t = make_table();
  Segmented m(5000, 4);  // S = 1250
  protocol::Header h = m.header_of(1);
  std::vector<std::uint8_t> shorter(1249);
  // A middle segment must carry exactly S bytes: fewer (which would overlap the next) is refused.
  EXPECT_EQ(t->add(
                 key_of(9),
                 [&] {
                   auto x = h;
                   x.payload_len = 1249;
                   return x;
                 }(),
                 shorter, 0)
                .verdict,
            Verdict::offset);
  EXPECT_EQ(t->messages_in_use(), 0u);
  EXPECT_EQ(add(*t, m, 0).verdict, Verdict::held);
  auto out = t->add(
      key_of(9),
      [&] {
        auto x = h;
        x.payload_len = 1249;
        return x;
      }(),
      shorter, 0);
  EXPECT_EQ(out.verdict, Verdict::offset);
  EXPECT_TRUE(out.freed);
  EXPECT_EQ(t->bytes_in_use(), 0u);
  // A geometry with no room for the last segment: 5 bytes in 4 segments gives S = 2, and
  // segments 0..2 already hold 6.
  Segmented impossible(5, 4);
  EXPECT_EQ(add(*t, impossible, 3).verdict, Verdict::offset);
  EXPECT_EQ(add(*t, impossible, 0).verdict, Verdict::offset);
  EXPECT_EQ(t->messages_in_use(), 0u);
}

TEST(Reassembly, TooLargeForTheBufferOrTooManySegments) {
  ReassemblyLimits limits;
  limits.max_message = 16384;
  auto t = make_table(limits);
  EXPECT_EQ(add(*t, Segmented(16385, 12), 0).verdict, Verdict::too_large);
  EXPECT_EQ(add(*t, Segmented(16384, 12), 0).verdict, Verdict::held);
  auto t2 = make_table();
  EXPECT_EQ(add(*t2, Segmented(65536, 1025), 0).verdict, Verdict::too_large);
  EXPECT_EQ(t2->messages_in_use(), 0u);
}

TEST(Reassembly, TimeoutFreesIncompleteMessages) {
  ReassemblyLimits limits;
  limits.timeout_ms = 500;
  auto t = make_table(limits);
  Segmented m(9000, 7);
  EXPECT_EQ(add(*t, m, 0, 100 * kMs).verdict, Verdict::held);
  EXPECT_EQ(add(*t, m, 1, 100 * kMs, key_of(10)).verdict, Verdict::held);
  EXPECT_EQ(add(*t, m, 2, 500 * kMs, key_of(11)).verdict, Verdict::held);
  EXPECT_EQ(t->expire(599 * kMs), 0u);
  EXPECT_EQ(t->messages_in_use(), 3u);
  EXPECT_EQ(t->expire(600 * kMs), 2u);
  EXPECT_EQ(t->messages_in_use(), 1u);
  EXPECT_EQ(t->bytes_in_use(), 12288u);  // 9000 bytes in 4 KiB blocks
  // The expired key starts afresh.
  EXPECT_EQ(add(*t, m, 3, 601 * kMs).verdict, Verdict::held);
  EXPECT_EQ(t->expire(2000 * kMs), 2u);
  EXPECT_EQ(t->messages_in_use(), 0u);
  EXPECT_EQ(t->bytes_in_use(), 0u);
}

TEST(Reassembly, LcoreMemoryAndMessageCountAreBounded) {
  ReassemblyLimits limits;
  limits.memory_per_lcore = 4 * 65536;
  limits.memory_per_tenant = 4 * 65536;
  auto t = make_table(limits);
  Segmented m(65536, 47);
  std::uint32_t held = 0, refused = 0;
  for (std::uint64_t id = 0; id < 10; ++id) {
    auto v = add(*t, m, 0, 0, key_of(100 + id, std::uint32_t(id % 3 + 1))).verdict;
    held += v == Verdict::held;
    refused += v == Verdict::no_memory;
  }
  EXPECT_EQ(held, 4u);
  EXPECT_EQ(refused, 6u);
  EXPECT_EQ(t->bytes_in_use(), 4u * 65536);

  ReassemblyLimits few;
  few.messages = 3;
  auto t2 = make_table(few);
  Segmented small(100, 2);
  for (std::uint64_t id = 0; id < 3; ++id) EXPECT_EQ(add(*t2, small, 0, 0, key_of(id)).verdict, Verdict::held);
  EXPECT_EQ(add(*t2, small, 0, 0, key_of(3)).verdict, Verdict::no_memory);
  // Completing one makes room.
  auto done = add(*t2, small, 1, 0, key_of(1));
  ASSERT_EQ(done.verdict, Verdict::complete);
  t2->release(done.entry);
  EXPECT_EQ(add(*t2, small, 0, 0, key_of(3)).verdict, Verdict::held);
}

TEST(Reassembly, OneTenantCannotTakeAnothersShare) {
  ReassemblyLimits limits;
  limits.memory_per_lcore = 1u << 20;
  limits.memory_per_tenant = 3 * 65536;
  auto t = make_table(limits);
  Segmented m(65536, 47);
  std::uint32_t refused = 0;
  for (std::uint64_t id = 0; id < 20; ++id) {
    refused += add(*t, m, 0, 0, key_of(id, 5)).verdict == Verdict::no_tenant_memory;
  }
  EXPECT_EQ(refused, 17u);
  EXPECT_EQ(t->tenant_bytes(5), 3u * 65536);
  // Tenant 6 is still served, whole.
  Segmented other(65536, 47, 9);
  ReassemblyTable::Outcome out;
  for (std::uint16_t i = 0; i < 47; ++i) out = add(*t, other, i, 0, key_of(1, 6));
  ASSERT_EQ(out.verdict, Verdict::complete);
  EXPECT_EQ(take(*t, out.entry), other.bytes);
  EXPECT_EQ(t->expire(10'000 * kMs), 3u);
  EXPECT_EQ(t->tenant_bytes(5), 0u);
  EXPECT_EQ(t->bytes_in_use(), 0u);
}

TEST(Reassembly, SameRequestIdFromAnotherSourceIsAnotherMessage) {
  auto t = make_table();
  Segmented a(3000, 2, 1), b(3000, 2, 2);
  EXPECT_EQ(add(*t, a, 0, 0, key_of(9, 1, 5000)).verdict, Verdict::held);
  EXPECT_EQ(add(*t, b, 0, 0, key_of(9, 1, 5001)).verdict, Verdict::held);
  EXPECT_EQ(add(*t, b, 0, 0, key_of(9, 2, 5000)).verdict, Verdict::held);
  auto out_a = add(*t, a, 1, 0, key_of(9, 1, 5000));
  auto out_b = add(*t, b, 1, 0, key_of(9, 1, 5001));
  ASSERT_EQ(out_a.verdict, Verdict::complete);
  ASSERT_EQ(out_b.verdict, Verdict::complete);
  EXPECT_EQ(take(*t, out_a.entry), a.bytes);
  EXPECT_EQ(take(*t, out_b.entry), b.bytes);
  EXPECT_EQ(t->messages_in_use(), 1u);
}

TEST(Reassembly, HandedOffMessageIsFreedOnlyWhenGivenBack) {
  auto t = make_table();
  Segmented m(3000, 2);
  (void)add(*t, m, 0);
  auto out = add(*t, m, 1);
  ASSERT_EQ(out.verdict, Verdict::complete);
  t->hand_off(out.entry);
  t->release(out.entry);  // the lender's release is a no-op while it is away
  EXPECT_EQ(t->expire(0), 0u);
  EXPECT_EQ(t->messages_in_use(), 1u);
  std::vector<std::uint8_t> copy(3000);
  t->copy_out(out.entry, copy.data());
  EXPECT_EQ(copy, m.bytes);
  t->give_back(out.entry);
  EXPECT_EQ(t->expire(0), 0u);  // not a timeout
  EXPECT_EQ(t->messages_in_use(), 0u);
  EXPECT_EQ(t->bytes_in_use(), 0u);
}

TEST(Reassembly, ManyMessagesInterleavedUnderChurn) {
  ReassemblyLimits limits;
  limits.messages = 64;
  auto t = make_table(limits);
  std::mt19937 rng(7);
  std::vector<Segmented> msgs;
  for (std::uint32_t i = 0; i < 40; ++i) msgs.emplace_back(1000 + i * 997 % 30000, std::uint16_t(2 + i % 9), i);
  std::vector<std::pair<std::uint32_t, std::uint16_t>> all;
  for (std::uint32_t i = 0; i < msgs.size(); ++i)
    for (std::uint16_t s = 0; s < msgs[i].header.segment_count; ++s) all.push_back({i, s});
  std::shuffle(all.begin(), all.end(), rng);
  std::uint32_t complete = 0;
  for (auto [i, s] : all) {
    auto out = add(*t, msgs[i], s, 0, key_of(1000 + i));
    if (out.verdict == Verdict::complete) {
      EXPECT_EQ(take(*t, out.entry), msgs[i].bytes) << i;
      ++complete;
    } else {
      EXPECT_EQ(out.verdict, Verdict::held);
    }
  }
  EXPECT_EQ(complete, msgs.size());
  EXPECT_EQ(t->messages_in_use(), 0u);
  EXPECT_EQ(t->bytes_in_use(), 0u);
}

}  // namespace
}  // namespace axon::dataplane
