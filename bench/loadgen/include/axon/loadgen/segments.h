// AXP segmentation for the load generator (docs/protocol.md §6): the plan that cuts a message into
// segments, and per-request tracking of segmented replies. The load generator only needs to know
// that every segment of a reply arrived and that the segments agree, so the tracker keeps a bitmap
// and the reply's shape per request, never the payload bytes: no allocation and no copy per reply.
#pragma once

#include <cstdint>

#include "axon/protocol/axp.h"

namespace axon::loadgen {

// How a message of message_len bytes is cut: segment_count = ceil(len / M) segments of
// S = ceil(len / count) bytes (every one but the last), the last one the rest (1..S bytes).
struct SegmentPlan {
  std::uint32_t message_len = 0;
  std::uint32_t count = 1;  // segment_count
  std::uint32_t size = 0;   // S

  [[nodiscard]] constexpr std::uint32_t payload_of(std::uint32_t index) const noexcept {
    return index + 1 < count ? size : message_len - size * (count - 1);
  }
  [[nodiscard]] constexpr std::uint32_t offset_of(std::uint32_t index) const noexcept { return index * size; }
};

// The sender's plan for a message within a largest segment payload max_segment (M > 0).
[[nodiscard]] constexpr SegmentPlan plan_segments(std::uint32_t message_len, std::uint32_t max_segment) noexcept {
  SegmentPlan plan;
  plan.message_len = message_len;
  if (message_len == 0 || max_segment == 0) return plan;
  plan.count = (message_len + max_segment - 1) / max_segment;
  plan.size = (message_len + plan.count - 1) / plan.count;
  return plan;
}

// The plan a receiver derives from one segment's header; false when the header breaks the rule
// (segment_count 0, an index past the count, a last segment left without a byte, or a payload_len
// that is not the rule's for its index).
[[nodiscard]] constexpr bool plan_from(const protocol::Header& h, SegmentPlan& out) noexcept {
  if (h.segment_count == 0 || h.segment_index >= h.segment_count) return false;
  SegmentPlan plan;
  plan.message_len = h.message_len;
  plan.count = h.segment_count;
  plan.size = (h.message_len + plan.count - 1) / plan.count;
  if (plan.count > 1 && plan.size * (plan.count - 1) >= plan.message_len) return false;
  if (h.payload_len != plan.payload_of(h.segment_index)) return false;
  out = plan;
  return true;
}

// Replies of more segments than this are not tracked (the appliance's replies of up to 64 KiB
// within a 1500-byte MTU take 48).
inline constexpr std::uint32_t kMaxReplySegments = 64;

// One request's reply being collected. Owned by the receiving thread, one per request slot.
struct ReplyProgress {
  std::uint64_t seq1 = 0;   // sequence + 1 of the request these segments belong to (0 = none)
  std::uint64_t seen = 0;   // bit i: segment i arrived
  std::uint64_t shape = 0;  // type, error code, message_len and segment_count of the reply
  std::uint64_t span = 0;   // its span_id: segments of two replies are never mixed (§6)
};

enum class SegmentVerdict : std::uint8_t {
  complete,   // this segment completed the reply
  partial,    // held; more segments to come
  duplicate,  // a segment already held: ignored
  mismatch,   // disagrees with the segments held: they are dropped, this one starts over
  offset,     // breaks the length rule: dropped, and what was held with it
  too_many,   // more segments than kMaxReplySegments: not tracked
};

// Records one segment of the reply to request `seq` (any segment_count, 1 included).
[[nodiscard]] constexpr SegmentVerdict absorb_reply_segment(ReplyProgress& p, std::uint64_t seq,
                                                            const protocol::Header& h) noexcept {
  if (h.segment_count > kMaxReplySegments) return SegmentVerdict::too_many;
  SegmentPlan plan;
  if (!plan_from(h, plan)) {
    if (p.seq1 == seq + 1) p = ReplyProgress{};
    return SegmentVerdict::offset;
  }
  const std::uint64_t shape = std::uint64_t{h.message_len} | std::uint64_t{h.segment_count} << 32 |
                              std::uint64_t{static_cast<std::uint8_t>(h.type)} << 48 |
                              std::uint64_t{static_cast<std::uint8_t>(h.error_code)} << 56;
  std::uint64_t span = 0;
  for (std::size_t i = 0; i < h.span_id.size(); ++i) span = span << 8 | h.span_id[i];
  SegmentVerdict fresh = SegmentVerdict::partial;
  if (p.seq1 == seq + 1 && p.seen != 0 && (p.shape != shape || p.span != span)) {
    fresh = SegmentVerdict::mismatch;  // another reply's segments: start over with this one
    p.seen = 0;
  }
  if (p.seq1 != seq + 1 || p.seen == 0) {
    p.seq1 = seq + 1;
    p.seen = 0;
    p.shape = shape;
    p.span = span;
  }
  const std::uint64_t bit = std::uint64_t{1} << h.segment_index;
  if ((p.seen & bit) != 0) return SegmentVerdict::duplicate;
  p.seen |= bit;
  const std::uint64_t all = h.segment_count == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << h.segment_count) - 1;
  if (p.seen == all) {
    p.seen = 0;
    p.seq1 = 0;
    return SegmentVerdict::complete;
  }
  return fresh;
}

}  // namespace axon::loadgen
