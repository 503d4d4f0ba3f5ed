// The load generator's segmentation (bench/loadgen segments.h) against the protocol library: the
// segments it plans, encoded with protocol::encode_header, must pass protocol::validate and put
// every payload byte back in place; its reply tracker must complete a reply exactly when the last
// of its segments arrives, in any order, and refuse what docs/protocol.md §6 says a client refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "axon/loadgen/segments.h"
#include "axon/protocol/axp.h"

namespace {

using axon::loadgen::absorb_reply_segment;
using axon::loadgen::plan_from;
using axon::loadgen::plan_segments;
using axon::loadgen::ReplyProgress;
using axon::loadgen::SegmentPlan;
using axon::loadgen::SegmentVerdict;
namespace p = axon::protocol;

constexpr std::uint32_t kM = 1392;  // 1500-byte MTU over IPv4: 1500 - 20 - 8 - 80

// Every segment of a message of `len` bytes as datagrams, the way the load generator writes them.
std::vector<std::vector<std::uint8_t>> segment_message(const std::vector<std::uint8_t>& message, std::uint32_t m,
                                                       p::Header h) {
  const SegmentPlan plan = plan_segments(static_cast<std::uint32_t>(message.size()), m);
  std::vector<std::vector<std::uint8_t>> out;
  h.message_len = static_cast<std::uint32_t>(message.size());
  h.segment_count = static_cast<std::uint16_t>(plan.count);
  for (std::uint32_t i = 0; i < plan.count; ++i) {
    h.segment_index = static_cast<std::uint16_t>(i);
    h.payload_len = static_cast<std::uint16_t>(plan.payload_of(i));
    std::vector<std::uint8_t> d(p::kHeaderLen + h.payload_len);
    EXPECT_EQ(p::encode_header(h, d), p::kHeaderLen);
    std::copy_n(message.begin() + plan.offset_of(i), h.payload_len, d.begin() + p::kHeaderLen);
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<std::uint8_t> pattern(std::size_t len) {
  std::vector<std::uint8_t> m(len);
  for (std::size_t i = 0; i < len; ++i) m[i] = static_cast<std::uint8_t>(i * 131 + (i >> 8));
  return m;
}

TEST(LoadgenSegments, PlanFollowsTheRuleAndValidates) {
  for (std::uint32_t len : {1u, 64u, 1391u, 1392u, 1393u, 2784u, 2785u, 8192u, 65535u, 65536u}) {
    const SegmentPlan plan = plan_segments(len, kM);
    EXPECT_EQ(plan.count, (len + kM - 1) / kM) << len;
    EXPECT_LE(plan.size, kM) << len;
    std::uint32_t total = 0;
    for (std::uint32_t i = 0; i < plan.count; ++i) {
      EXPECT_GE(plan.payload_of(i), 1u) << len << " segment " << i;
      EXPECT_LE(plan.payload_of(i), plan.size) << len << " segment " << i;
      EXPECT_EQ(plan.offset_of(i), total) << len << " segment " << i;
      total += plan.payload_of(i);
    }
    EXPECT_EQ(total, len);

    p::Header h;
    h.tenant_id = 1;
    h.agent_id = 2;
    h.request_id = 77;
    const auto message = pattern(len);
    const auto datagrams = segment_message(message, kM, h);
    std::vector<std::uint8_t> rebuilt(len, 0);
    for (const auto& d : datagrams) {
      ASSERT_LE(d.size(), p::kHeaderLen + kM);
      ASSERT_EQ(p::validate_request(d), p::Reason::ok) << len;
      const p::Header got = p::decode_header(d);
      SegmentPlan from;
      ASSERT_TRUE(plan_from(got, from)) << len << " segment " << got.segment_index;
      EXPECT_EQ(from.count, plan.count);
      EXPECT_EQ(from.size, plan.size);
      const auto body = p::payload_of(d);
      std::copy(body.begin(), body.end(), rebuilt.begin() + from.offset_of(got.segment_index));
    }
    EXPECT_EQ(rebuilt, message) << len;
  }
}

TEST(LoadgenSegments, PlanFromRefusesWhatBreaksTheRule) {
  p::Header h;
  h.message_len = 8192;
  h.segment_count = 6;  // S = 1366, last = 1362
  h.segment_index = 0;
  h.payload_len = 1366;
  SegmentPlan plan;
  EXPECT_TRUE(plan_from(h, plan));
  h.payload_len = 1365;  // not S
  EXPECT_FALSE(plan_from(h, plan));
  h.segment_index = 5;
  h.payload_len = 1362;
  EXPECT_TRUE(plan_from(h, plan));
  h.payload_len = 1366;  // the last one carries the rest, not S
  EXPECT_FALSE(plan_from(h, plan));
  h.segment_index = 6;  // past the count
  EXPECT_FALSE(plan_from(h, plan));
  h.segment_index = 0;
  h.segment_count = 0;
  EXPECT_FALSE(plan_from(h, plan));
  // 4 segments of S = 2 for 6 bytes leave the last one nothing.
  h.message_len = 6;
  h.segment_count = 4;
  h.payload_len = 2;
  EXPECT_FALSE(plan_from(h, plan));
}

// The reply headers of a message as the appliance segments it (same rule, same fields).
std::vector<p::Header> reply_segments(std::uint32_t len, std::uint8_t span0) {
  const SegmentPlan plan = plan_segments(len, kM);
  std::vector<p::Header> out;
  p::Header h;
  h.type = p::MessageType::response;
  h.message_len = len;
  h.segment_count = static_cast<std::uint16_t>(plan.count);
  h.span_id[0] = span0;
  for (std::uint32_t i = 0; i < plan.count; ++i) {
    h.segment_index = static_cast<std::uint16_t>(i);
    h.payload_len = static_cast<std::uint16_t>(plan.payload_of(i));
    std::vector<std::uint8_t> d(p::kHeaderLen + h.payload_len);
    EXPECT_EQ(p::encode_header(h, d), p::kHeaderLen);
    EXPECT_EQ(p::validate(d), p::Reason::ok);
    out.push_back(p::decode_header(d));  // through the wire, as the load generator sees it
  }
  return out;
}

TEST(LoadgenSegments, ReplyCompletesOnItsLastSegmentInAnyOrder) {
  std::mt19937 rng(7);
  for (std::uint32_t len : {1393u, 8192u, 65536u}) {
    auto segs = reply_segments(len, 1);
    std::shuffle(segs.begin(), segs.end(), rng);
    ReplyProgress progress;
    for (std::size_t i = 0; i < segs.size(); ++i) {
      const SegmentVerdict v = absorb_reply_segment(progress, 41, segs[i]);
      ASSERT_EQ(v, i + 1 == segs.size() ? SegmentVerdict::complete : SegmentVerdict::partial) << len << " at " << i;
      // A segment again before the end is a duplicate and changes nothing.
      if (i + 1 < segs.size()) {
        ASSERT_EQ(absorb_reply_segment(progress, 41, segs[i]), SegmentVerdict::duplicate);
      }
    }
  }
}

TEST(LoadgenSegments, OneSegmentReplyCompletesAtOnce) {
  p::Header h;
  h.type = p::MessageType::error;
  h.error_code = p::ErrorCode::payload_too_large;
  ReplyProgress progress;
  EXPECT_EQ(absorb_reply_segment(progress, 3, h), SegmentVerdict::complete);
}

TEST(LoadgenSegments, SegmentsOfAnotherReplyAreNeverMixedIn) {
  // Two replies to one request id (a retransmit answered twice), told apart by span_id.
  auto first = reply_segments(8192, 1);
  auto second = reply_segments(8192, 2);
  ReplyProgress progress;
  ASSERT_EQ(absorb_reply_segment(progress, 9, first[0]), SegmentVerdict::partial);
  ASSERT_EQ(absorb_reply_segment(progress, 9, first[1]), SegmentVerdict::partial);
  // The other reply's segment drops what was held and starts over with itself.
  ASSERT_EQ(absorb_reply_segment(progress, 9, second[2]), SegmentVerdict::mismatch);
  for (std::size_t i = 0; i < second.size(); ++i) {
    if (i == 2) continue;
    const bool last = i + 1 == second.size();
    ASSERT_EQ(absorb_reply_segment(progress, 9, second[i]), last ? SegmentVerdict::complete : SegmentVerdict::partial)
        << i;
  }
  // A different length for the same request id is another reply too.
  auto other_len = reply_segments(4000, 1);
  ReplyProgress p2;
  ASSERT_EQ(absorb_reply_segment(p2, 9, first[0]), SegmentVerdict::partial);
  EXPECT_EQ(absorb_reply_segment(p2, 9, other_len[1]), SegmentVerdict::mismatch);
}

TEST(LoadgenSegments, BrokenSegmentDropsThePartialReply) {
  auto segs = reply_segments(8192, 1);
  ReplyProgress progress;
  ASSERT_EQ(absorb_reply_segment(progress, 5, segs[0]), SegmentVerdict::partial);
  p::Header broken = segs[1];
  broken.payload_len = static_cast<std::uint16_t>(broken.payload_len - 1);
  EXPECT_EQ(absorb_reply_segment(progress, 5, broken), SegmentVerdict::offset);
  // What was held went with it: segment 0 is taken as new, not as a duplicate.
  EXPECT_EQ(absorb_reply_segment(progress, 5, segs[0]), SegmentVerdict::partial);
}

TEST(LoadgenSegments, ANewRequestInTheSlotStartsAfresh) {
  auto segs = reply_segments(8192, 1);
  ReplyProgress progress;
  ASSERT_EQ(absorb_reply_segment(progress, 5, segs[0]), SegmentVerdict::partial);
  // The slot now belongs to request 5 + ring size: segment 0 is not a duplicate of the old one.
  EXPECT_EQ(absorb_reply_segment(progress, 5 + 4096, segs[0]), SegmentVerdict::partial);
}

TEST(LoadgenSegments, MoreSegmentsThanTrackedAreRefused) {
  p::Header h;
  h.type = p::MessageType::response;
  h.message_len = 65536;
  h.segment_count = 65;
  h.payload_len = static_cast<std::uint16_t>((65536 + 64) / 65);
  ReplyProgress progress;
  EXPECT_EQ(absorb_reply_segment(progress, 1, h), SegmentVerdict::too_many);
}

}  // namespace
