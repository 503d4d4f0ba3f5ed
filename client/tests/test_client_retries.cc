// axon::client's message rules against a scripted fake server on loopback: §6 segmentation at
// the size boundaries, reply reassembly with duplicates and another reply's segments, and the
// retry rules of call() (same request id and header on every attempt, the retry budget, BUSY's
// retry_after). Timing is only asserted from below; nothing asserts performance.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "axon/client/client.h"
#include "axon/common/clock.h"

#include "fake_server.h"

namespace {

namespace p = axon::protocol;
using axon::client::CallOptions;
using axon::client::Client;
using axon::client::ClientError;
using axon::client::ClientOptions;
using axon::client::RequestOptions;
using axon::client::TraceContext;
using axon::client::testing::FakeServer;
using namespace std::chrono_literals;

std::vector<std::uint8_t> pattern(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::uint8_t(i * 13 + i / 251);
  return v;
}

RequestOptions traced_request() {
  RequestOptions r;
  r.tenant = 3;
  r.agent = 9;
  r.session_key = 0xC0FFEE;
  r.deadline_us = 250'000;
  r.trace = TraceContext::generate();
  return r;
}

// The header bytes a segment shares with every other segment of its message: the whole header
// with segment_index and payload_len zeroed.
std::vector<std::uint8_t> shared_header(const std::vector<std::uint8_t>& dgram) {
  p::Header h = p::decode_header(dgram);
  h.segment_index = 0;
  h.payload_len = 0;
  std::vector<std::uint8_t> out(p::kHeaderLen);
  EXPECT_EQ(p::encode_header(h, out), p::kHeaderLen);
  return out;
}

// Receives one whole request (all its segments, in order of arrival); empty when none came.
std::vector<std::vector<std::uint8_t>> receive_message(FakeServer& fake, int timeout_ms = 2000) {
  std::vector<std::vector<std::uint8_t>> segs;
  for (;;) {
    auto d = fake.receive(timeout_ms);
    if (d.empty()) return segs;
    segs.push_back(d);
    if (segs.size() >= p::decode_header(d).segment_count) return segs;
  }
}

// Echoes a message back, as §6 segments of at most 1392 bytes when it is longer than that.
void echo(FakeServer& fake, const std::vector<std::vector<std::uint8_t>>& segs) {
  p::Header h = p::decode_header(segs.front());
  std::vector<std::uint8_t> message(h.message_len);
  const std::size_t size = (h.message_len + h.segment_count - 1) / h.segment_count;
  for (const auto& s : segs) {
    auto body = p::payload_of(s);
    std::memcpy(message.data() + p::decode_header(s).segment_index * size, body.data(), body.size());
  }
  p::Header r = p::make_reply(h, p::MessageType::response, p::random_span_id());
  const std::size_t len = message.size();
  const std::size_t count = std::max<std::size_t>(1, (len + 1391) / 1392);
  const std::size_t piece = (len + count - 1) / count;
  r.segment_count = std::uint16_t(count);
  r.message_len = std::uint32_t(len);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t n = std::min(piece, len - i * piece);
    r.segment_index = std::uint16_t(i);
    r.payload_len = std::uint16_t(n);
    std::vector<std::uint8_t> out(p::kHeaderLen + n);
    (void)p::encode_header(r, out);
    std::memcpy(out.data() + p::kHeaderLen, message.data() + i * piece, n);
    fake.send(out);
  }
}

// §6 at its boundaries: 1 byte and exactly M bytes (M = max_datagram_bytes - header) go as one
// datagram; M + 1 as two of ceil((M+1)/2) and the rest; 65536 as ceil(65536/M). Every segment
// carries the same header but for segment_index and payload_len, and the bytes arrive whole.
TEST(ClientSegmentation, SizesAtTheBoundaries) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  ClientOptions copts;  // the 1472-byte default: M = 1392
  auto c = Client::open("127.0.0.1", fake.port(), copts);
  ASSERT_TRUE(c.ok()) << c.message();
  const std::size_t m = copts.max_datagram_bytes - p::kHeaderLen;
  struct Case {
    std::size_t len, count, first_len;
  };
  const Case cases[] = {{1, 1, 1}, {m, 1, m}, {m + 1, 2, (m + 2) / 2}, {65536, (65536 + m - 1) / m, 0}};
  for (const Case& k : cases) {
    SCOPED_TRACE("payload of " + std::to_string(k.len) + " bytes");
    const auto message = pattern(k.len);
    std::vector<std::vector<std::uint8_t>> segs;
    std::thread server([&] {
      segs = receive_message(fake);
      if (!segs.empty()) echo(fake, segs);
    });
    CallOptions call;
    call.timeout = 3s;
    auto reply = c->call(traced_request(), message, call);
    server.join();
    ASSERT_TRUE(reply.ok()) << reply.message();
    EXPECT_EQ(reply->payload, message);
    ASSERT_EQ(segs.size(), k.count);
    const std::size_t size = (k.len + k.count - 1) / k.count;
    if (k.first_len != 0) {
      EXPECT_EQ(size, k.first_len);
    }
    const auto shared = shared_header(segs[0]);
    for (std::size_t i = 0; i < segs.size(); ++i) {
      p::Header h = p::decode_header(segs[i]);
      ASSERT_EQ(p::validate_request(segs[i]), p::Reason::ok);
      EXPECT_EQ(h.segment_index, i);
      EXPECT_EQ(h.segment_count, k.count);
      EXPECT_EQ(h.message_len, k.len);
      EXPECT_EQ(h.payload_len, i + 1 < k.count ? size : k.len - (k.count - 1) * size);
      EXPECT_LE(segs[i].size(), copts.max_datagram_bytes);
      EXPECT_EQ(shared_header(segs[i]), shared) << "segment " << i << " has another header";
    }
  }
}

// Out of order, a duplicate, then a segment of another reply (another span_id: another attempt
// that ran): the held partial is replaced, never mixed, and the replacement counted.
TEST(ClientSegmentation, ReassemblyInAnyOrderDuplicatesIgnoredAnotherReplyNotMixed) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  auto send_segment = [&](p::Header r, std::uint16_t index, char fill) {
    r.segment_count = 3;
    r.message_len = 9;
    r.segment_index = index;
    r.payload_len = 3;
    std::vector<std::uint8_t> out(p::kHeaderLen + 3, std::uint8_t(fill + index));
    (void)p::encode_header(r, out);
    fake.send(out);
  };
  std::thread server([&] {
    auto req = fake.receive();
    if (req.empty()) return;
    p::Header h = p::decode_header(req);
    p::Header a = p::make_reply(h, p::MessageType::response, p::random_span_id());
    p::Header b = p::make_reply(h, p::MessageType::response, p::random_span_id());
    send_segment(a, 2, 'a');
    send_segment(a, 0, 'a');
    send_segment(a, 0, 'a');  // duplicate
    send_segment(b, 1, 'A');  // another reply: a's two segments are dropped, not mixed in
    send_segment(b, 2, 'A');
    send_segment(b, 2, 'A');  // duplicate
    send_segment(b, 0, 'A');
  });
  CallOptions call;
  call.timeout = 2s;
  auto reply = c->call(traced_request(), std::vector<std::uint8_t>{1}, call);
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(std::string(reply->payload.begin(), reply->payload.end()), "AAABBBCCC");
  EXPECT_EQ(c->counters().reply_restarts, 1u);
  EXPECT_EQ(c->counters().invalid, 0u);
  EXPECT_EQ(c->counters().replies, 1u);
}

// The fake server drops the first attempt of a 3-segment request; the retry is the same
// request: same id and the same header bytes (deadline_us and trace context included), every
// segment again, and Reply::attempts counts both sends.
TEST(ClientRetries, ATimeoutRetryReusesTheRequestIdAndHeader) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  const auto message = pattern(3000);
  std::vector<std::vector<std::uint8_t>> first, second;
  std::thread server([&] {
    first = receive_message(fake);  // dropped
    second = receive_message(fake);
    if (!second.empty()) echo(fake, second);
  });
  CallOptions call;
  call.timeout = 5s;
  call.timeout_retries = 3;
  call.attempt_timeout = 100ms;
  call.backoff_initial = 10ms;
  auto reply = c->call(traced_request(), message, call);
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(reply->payload, message);
  EXPECT_EQ(reply->attempts, 2u);
  EXPECT_EQ(c->counters().retries, 1u);
  EXPECT_EQ(c->counters().timeouts, 0u);
  ASSERT_EQ(first.size(), 3u);
  ASSERT_EQ(second.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(first[i], second[i]) << "segment " << i << " differs on retry";
  EXPECT_EQ(p::decode_header(second[0]).deadline_us, 250'000u);
}

// The retry budget: timeout_retries = 2 means three sends, all with one request id, then a
// timeout; the backoff doubles up to backoff_max (checked from below only).
TEST(ClientRetries, TheRetryBudgetBoundsTheSends) {
  FakeServer silent;
  ASSERT_TRUE(silent.ok());
  auto c = Client::open("127.0.0.1", silent.port());
  ASSERT_TRUE(c.ok());
  CallOptions call;
  call.timeout = 800ms;
  call.timeout_retries = 2;
  call.attempt_timeout = 40ms;
  call.backoff_initial = 20ms;
  call.backoff_max = 30ms;
  std::vector<std::uint64_t> ids, at;
  std::thread server([&] {
    for (;;) {
      auto d = silent.receive(1500);
      if (d.empty()) return;
      at.push_back(axon::monotonic_ns());
      ids.push_back(p::decode_header(d).request_id);
    }
  });
  const std::uint64_t start = axon::monotonic_ns();
  auto reply = c->call(traced_request(), pattern(10), call);
  server.join();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.code(), ClientError::timeout);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[1], ids[0]);
  EXPECT_EQ(ids[2], ids[0]);
  // Two attempt timeouts and backoffs of 20 and min(40, 30) ms lie before the third send.
  EXPECT_GE(at[2] - start, 130'000'000u);
  EXPECT_EQ(c->counters().retries, 2u);
  EXPECT_EQ(c->counters().timeouts, 1u);
}

// BUSY's retry_after is honoured before the resend, the resend keeps the id and header, and a
// BUSY then an unanswered attempt then a reply count three sends.
TEST(ClientRetries, BusyRetryAfterIsHonouredAlongsideTimeoutRetries) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  std::vector<std::vector<std::uint8_t>> got;
  std::uint64_t busy_sent_ns = 0, retry_seen_ns = 0;
  std::thread server([&] {
    auto a = fake.receive();
    if (a.empty()) return;
    got.push_back(a);
    busy_sent_ns = axon::monotonic_ns();
    fake.reply(p::make_busy_reply(p::decode_header(a), 30'000, p::random_span_id()), {});
    auto b = fake.receive();  // dropped: no reply
    if (b.empty()) return;
    retry_seen_ns = axon::monotonic_ns();
    got.push_back(b);
    auto d = fake.receive();
    if (d.empty()) return;
    got.push_back(d);
    fake.reply(p::make_reply(p::decode_header(d), p::MessageType::response, p::random_span_id()), p::payload_of(d));
  });
  CallOptions call;
  call.timeout = 5s;
  call.busy_retries = 1;
  call.timeout_retries = 1;
  call.attempt_timeout = 100ms;
  call.backoff_initial = 10ms;
  auto reply = c->call(traced_request(), pattern(5), call);
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(reply->type, p::MessageType::response);
  EXPECT_EQ(reply->attempts, 3u);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1], got[0]);
  EXPECT_EQ(got[2], got[0]);
  EXPECT_GE(retry_seen_ns - busy_sent_ns, 30'000'000u) << "the retry must wait retry_after_us";
}

TEST(ClientRetries, RetriesWithoutAnAttemptTimeoutAreRefused) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  CallOptions call;
  call.timeout_retries = 1;
  call.attempt_timeout = 0ms;
  auto reply = c->call(traced_request(), pattern(5), call);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.code(), ClientError::invalid_argument);
  EXPECT_EQ(c->counters().sent, 0u);
}

}  // namespace
