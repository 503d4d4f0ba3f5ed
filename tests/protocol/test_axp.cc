// AXP codec, validator and reply rules; the spec's example packet is checked against the encoder.
#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "axon/protocol/axp.h"

#include "packet_cases.h"

namespace axon::protocol {
namespace {

std::vector<std::uint8_t> encode(const Header& h, std::vector<std::uint8_t> payload = {}) {
  std::vector<std::uint8_t> out(kHeaderLen + payload.size());
  EXPECT_EQ(encode_datagram(h, payload, out), out.size());
  return out;
}

TEST(AxpHeader, SharedStructLayoutMatchesTheSpec) {
  EXPECT_EQ(sizeof(axp_header), 80u);
  EXPECT_EQ(offsetof(axp_header, magic), 0u);
  EXPECT_EQ(offsetof(axp_header, version), 4u);
  EXPECT_EQ(offsetof(axp_header, type), 5u);
  EXPECT_EQ(offsetof(axp_header, priority), 6u);
  EXPECT_EQ(offsetof(axp_header, trace_flags), 7u);
  EXPECT_EQ(offsetof(axp_header, header_len), 8u);
  EXPECT_EQ(offsetof(axp_header, payload_len), 10u);
  EXPECT_EQ(offsetof(axp_header, segment_index), 12u);
  EXPECT_EQ(offsetof(axp_header, segment_count), 14u);
  EXPECT_EQ(offsetof(axp_header, tenant_id), 16u);
  EXPECT_EQ(offsetof(axp_header, agent_id), 20u);
  EXPECT_EQ(offsetof(axp_header, session_key), 24u);
  EXPECT_EQ(offsetof(axp_header, request_id), 32u);
  EXPECT_EQ(offsetof(axp_header, trace_id), 40u);
  EXPECT_EQ(offsetof(axp_header, span_id), 56u);
  EXPECT_EQ(offsetof(axp_header, deadline_us), 64u);
  EXPECT_EQ(offsetof(axp_header, message_len), 68u);
  EXPECT_EQ(offsetof(axp_header, error_code), 72u);
  EXPECT_EQ(offsetof(axp_header, reserved), 74u);
  EXPECT_EQ(offsetof(axp_header, retry_after_us), 76u);
}

TEST(AxpHeader, EncodeDecodeRoundTrip) {
  Header h = test::FrameSpec::default_header();
  h.priority = Priority::background;
  h.segment_index = 2;
  h.segment_count = 5;
  h.message_len = 4000;
  h.payload_len = 1000;
  h.error_code = ErrorCode::worker_failed;
  h.retry_after_us = 1234;
  std::vector<std::uint8_t> buf(kHeaderLen);
  ASSERT_EQ(encode_header(h, buf), kHeaderLen);
  EXPECT_EQ(decode_header(buf), h);
}

TEST(AxpHeader, EncodeRefusesShortBuffers) {
  std::vector<std::uint8_t> small(kHeaderLen - 1);
  EXPECT_EQ(encode_header(Header{}, small), 0u);
  std::vector<std::uint8_t> payload(10);
  std::vector<std::uint8_t> out(kHeaderLen + 9);
  EXPECT_EQ(encode_datagram(Header{}, payload, out), 0u);
}

TEST(AxpHeader, EncodeDatagramFillsLengthsAndValidates) {
  Header h = test::FrameSpec::default_header();
  h.payload_len = 999;  // overwritten from the payload
  auto datagram = encode(h, {1, 2, 3});
  Header back = decode_header(datagram);
  EXPECT_EQ(back.header_len, kHeaderLen);
  EXPECT_EQ(back.payload_len, 3u);
  EXPECT_EQ(back.message_len, 3u);
  EXPECT_EQ(back.segment_index, 0u);
  EXPECT_EQ(back.segment_count, 1u);
  EXPECT_EQ(validate(datagram), Reason::ok);
  EXPECT_EQ(validate_request(datagram), Reason::ok);
  auto body = payload_of(datagram);
  ASSERT_EQ(body.size(), 3u);
  EXPECT_EQ(body[2], 3);
}

TEST(AxpHeader, EveryMessageTypeValidatesButOnlyRequestIsInbound) {
  for (MessageType type : {MessageType::response, MessageType::busy, MessageType::error}) {
    Header h = test::FrameSpec::default_header();
    h.type = type;
    auto datagram = encode(h);
    EXPECT_EQ(validate(datagram), Reason::ok) << to_string(type);
    EXPECT_EQ(validate_request(datagram), Reason::not_request) << to_string(type);
  }
}

// Datagram-level rules, each on its own: the validator's order is part of the spec.
struct DatagramCase {
  const char* name;
  std::function<void(std::vector<std::uint8_t>&)> mutate;
  Reason expected;
};

void put16(std::vector<std::uint8_t>& d, std::size_t at, std::uint16_t v) {
  d[at] = static_cast<std::uint8_t>(v >> 8);
  d[at + 1] = static_cast<std::uint8_t>(v);
}

TEST(AxpValidate, RulesInDocumentedOrder) {
  const std::vector<DatagramCase> cases = {
      {"valid", [](auto&) {}, Reason::ok},
      {"empty", [](auto& d) { d.clear(); }, Reason::axp_truncated},
      {"seven_bytes", [](auto& d) { d.resize(7); }, Reason::axp_truncated},
      {"bad_magic_before_length",
       [](auto& d) {
         d.resize(8);
         d[0] = 'B';
       },
       Reason::bad_magic},
      {"bad_version_before_length",
       [](auto& d) {
         d.resize(8);
         d[4] = 9;
       },
       Reason::bad_version},
      {"version_zero", [](auto& d) { d[4] = 0; }, Reason::bad_version},
      {"header_cut", [](auto& d) { d.resize(79); }, Reason::axp_truncated},
      {"header_len_88_without_bytes", [](auto& d) { put16(d, 8, 88); }, Reason::bad_length},
      {"header_len_520", [](auto& d) { put16(d, 8, 520); }, Reason::bad_header_len},
      {"header_len_0", [](auto& d) { put16(d, 8, 0); }, Reason::bad_header_len},
      {"payload_len_short", [](auto& d) { put16(d, 10, 3); }, Reason::bad_length},
      {"payload_len_long", [](auto& d) { put16(d, 10, 5); }, Reason::bad_length},
      {"trailing_byte", [](auto& d) { d.push_back(0); }, Reason::bad_length},
      {"type_zero", [](auto& d) { d[5] = 0; }, Reason::bad_type},
      {"type_five", [](auto& d) { d[5] = 5; }, Reason::bad_type},
      {"priority_two", [](auto& d) { d[6] = 2; }, Reason::bad_priority},
      {"segment_count_zero", [](auto& d) { put16(d, 14, 0); }, Reason::bad_segment},
      {"segment_index_equal_count", [](auto& d) { put16(d, 12, 1); }, Reason::bad_segment},
      {"message_len_64k_ok_for_segments",
       [](auto& d) {
         put16(d, 14, 20);
         put16(d, 68, 1);
         put16(d, 70, 0);
       },
       Reason::ok},
      {"message_len_above_64k",
       [](auto& d) {
         put16(d, 14, 20);
         put16(d, 68, 1);
         put16(d, 70, 1);
       },
       Reason::too_large},
      {"segment_payload_above_message",
       [](auto& d) {
         put16(d, 14, 2);
         put16(d, 70, 3);
       },
       Reason::bad_length},
      {"reserved_and_flags_ignored",
       [](auto& d) {
         d[7] = 0xFF;
         put16(d, 74, 0xFFFF);
       },
       Reason::ok},
  };
  for (const auto& c : cases) {
    auto datagram = encode(test::FrameSpec::default_header(), {'a', 'b', 'c', 'd'});
    c.mutate(datagram);
    EXPECT_EQ(validate(datagram), c.expected) << c.name << ": got " << to_string(validate(datagram));
  }
}

TEST(AxpValidate, NeverReadsPastTheBuffer) {
  // Every prefix of a valid datagram, copied to an exactly-sized heap block: ASan builds turn
  // any over-read into a failure.
  auto datagram = encode(test::FrameSpec::default_header(), std::vector<std::uint8_t>(64, 7));
  for (std::size_t len = 0; len <= datagram.size(); ++len) {
    std::unique_ptr<std::uint8_t[]> exact(new std::uint8_t[len == 0 ? 1 : len]);
    if (len) std::memcpy(exact.get(), datagram.data(), len);
    Reason r = validate({exact.get(), len});
    if (len == datagram.size())
      EXPECT_EQ(r, Reason::ok);
    else
      EXPECT_TRUE(is_drop(r)) << len;
  }
}

TEST(AxpReply, EchoesIdsAndContinuesTheTrace) {
  Header request = test::FrameSpec::default_header();
  request.priority = Priority::background;
  SpanId mine = random_span_id();
  Header reply = make_reply(request, MessageType::response, mine);
  EXPECT_EQ(reply.type, MessageType::response);
  EXPECT_EQ(reply.request_id, request.request_id);
  EXPECT_EQ(reply.tenant_id, request.tenant_id);
  EXPECT_EQ(reply.agent_id, request.agent_id);
  EXPECT_EQ(reply.session_key, request.session_key);
  EXPECT_EQ(reply.priority, request.priority);
  EXPECT_EQ(reply.trace_id, request.trace_id);
  EXPECT_EQ(reply.trace_flags, request.trace_flags);
  EXPECT_EQ(reply.span_id, mine);
  EXPECT_NE(reply.span_id, request.span_id);
  EXPECT_EQ(reply.deadline_us, 0u);
  EXPECT_EQ(reply.error_code, ErrorCode::none);

  Header busy = make_busy_reply(request, 250, mine);
  EXPECT_EQ(busy.type, MessageType::busy);
  EXPECT_EQ(busy.retry_after_us, 250u);
  Header error = make_error_reply(request, ErrorCode::deadline_exceeded, mine);
  EXPECT_EQ(error.type, MessageType::error);
  EXPECT_EQ(error.error_code, ErrorCode::deadline_exceeded);
  EXPECT_EQ(validate(encode(error)), Reason::ok);
}

// Issue 11 item 1: a request without trace context got a reply with a random span id.
TEST(AxpTrace, ReplySpanOnlyForARequestWithTraceContext) {
  const SpanId fresh = random_span_id();
  const Header full = test::FrameSpec::default_header();
  ASSERT_TRUE(is_valid_trace_id(full.trace_id));
  ASSERT_NE(full.span_id, SpanId{});
  struct Case {
    const char* name;
    bool trace_set, span_set;
    bool expect_span;  // the reply carries the responder's span
  };
  const Case cases[] = {
      {"trace_id and span_id set: a child span", true, true, true},
      {"both zero: no trace context, a zero span", false, false, false},
      {"trace_id set, span_id zero: invalid parent, a zero span", true, false, false},
      {"trace_id zero, span_id set: invalid, a zero span", false, true, false},
  };
  for (const Case& c : cases) {
    Header request = full;
    if (!c.trace_set) request.trace_id = TraceId{};
    if (!c.span_set) request.span_id = SpanId{};
    EXPECT_EQ(has_trace_context(request), c.expect_span) << c.name;
    for (const Header& reply : {make_reply(request, MessageType::response, fresh), make_busy_reply(request, 200, fresh),
                                make_error_reply(request, ErrorCode::worker_failed, fresh, 100000)}) {
      EXPECT_EQ(reply.trace_id, request.trace_id) << c.name << ": trace_id is echoed as received";
      EXPECT_EQ(reply.trace_flags, request.trace_flags) << c.name;
      EXPECT_EQ(reply.span_id, c.expect_span ? fresh : SpanId{}) << c.name;
    }
  }
}

TEST(AxpTrace, RandomIdsAreNonZeroAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    TraceId t = random_trace_id();
    SpanId s = random_span_id();
    EXPECT_TRUE(is_valid_trace_id(t));
    EXPECT_NE(s, SpanId{});
    seen.insert(to_traceparent(t, s, 1));
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_FALSE(is_valid_trace_id(TraceId{}));
}

TEST(AxpTrace, TraceparentFormat) {
  Header h = test::FrameSpec::default_header();
  EXPECT_EQ(to_traceparent(h.trace_id, h.span_id, 1), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

TEST(AxpNames, EveryEnumValueHasAName) {
  for (std::size_t i = 0; i < kReasonCount; ++i) EXPECT_STRNE(to_string(static_cast<Reason>(i)), "unknown") << i;
  for (std::size_t i = 0; i < kErrorCodeCount; ++i) EXPECT_STRNE(to_string(static_cast<ErrorCode>(i)), "unknown") << i;
}

// The hex block in docs/protocol.md must be exactly what the encoder produces for the example
// described next to it, so the spec cannot drift from the code.
std::vector<std::uint8_t> example_from_spec(const std::string& marker = "<!-- example-request-hex -->") {
  std::ifstream doc(AXON_PROTOCOL_DOC);
  EXPECT_TRUE(doc.good()) << "cannot read " << AXON_PROTOCOL_DOC;
  std::string line;
  bool in_block = false;
  bool seen_marker = false;
  std::vector<std::uint8_t> bytes;
  while (std::getline(doc, line)) {
    if (line.find(marker) != std::string::npos) {
      seen_marker = true;
      continue;
    }
    if (!seen_marker) continue;
    if (line.rfind("```", 0) == 0) {
      if (in_block) break;
      in_block = true;
      continue;
    }
    if (!in_block) continue;
    std::istringstream words(line);
    std::string word;
    words >> word;  // the offset column
    while (words >> word) {
      if (word.size() != 2 || !std::isxdigit(static_cast<unsigned char>(word[0])) ||
          !std::isxdigit(static_cast<unsigned char>(word[1])))
        break;  // the annotation column starts
      bytes.push_back(static_cast<std::uint8_t>(std::stoul(word, nullptr, 16)));
    }
  }
  return bytes;
}

TEST(AxpSpec, ExampleRequestInDocsMatchesEncoder) {
  Header h = test::FrameSpec::default_header();  // tenant 1, agent 42, the W3C example trace
  const std::vector<std::uint8_t> hello = {'h', 'e', 'l', 'l', 'o'};
  auto expected = encode(h, hello);
  auto documented = example_from_spec();
  ASSERT_EQ(documented.size(), expected.size()) << "docs/protocol.md example has the wrong length";
  EXPECT_EQ(documented, expected);
  EXPECT_EQ(validate_request(documented), Reason::ok);
}

// §9's two-segment example: "hello world" cut by the §6 rule (S = ceil(11 / 2) = 6).
TEST(AxpSpec, SegmentedExampleInDocsMatchesEncoderAndTheSegmentRule) {
  const std::string message = "hello world";
  const std::size_t size = (message.size() + 1) / 2;
  for (std::uint16_t index = 0; index < 2; ++index) {
    Header h = test::FrameSpec::default_header();
    h.segment_index = index;
    h.segment_count = 2;
    h.message_len = std::uint32_t(message.size());
    const std::string piece = message.substr(index * size, size);
    h.payload_len = std::uint16_t(piece.size());
    std::vector<std::uint8_t> expected(kHeaderLen + piece.size());
    ASSERT_EQ(encode_header(h, expected), kHeaderLen);
    std::copy(piece.begin(), piece.end(), expected.begin() + kHeaderLen);
    auto documented = example_from_spec("<!-- example-segment" + std::to_string(index) + "-hex -->");
    ASSERT_EQ(documented.size(), expected.size()) << "segment " << index << " of the docs/protocol.md example";
    EXPECT_EQ(documented, expected) << "segment " << index;
    EXPECT_EQ(validate_request(documented), Reason::ok);
  }
}

}  // namespace
}  // namespace axon::protocol
