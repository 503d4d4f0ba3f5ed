// Trace context through the worker SDK (docs/protocol.md §5), C++ and C, against a real
// data-plane channel in this process: the handler reads the request's traceparent and its own
// span (made by the SDK, random and non-zero), and the reply descriptor carries that span back;
// a request without trace context gets no span and empty traceparents.
#include "axon/sdk/trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>

#include "axon/sdk/worker.h"
#include "axon/shm/channel.h"

#include "axon_worker.h"

namespace {

using axon::sdk::Request;
using axon::sdk::TraceContext;
using axon::shm::ChannelOptions;
using axon::shm::Completion;
using axon::shm::OutgoingRequest;
using axon::shm::WorkerChannel;

// The example of docs/protocol.md §9.
constexpr char kTraceparent[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

WorkerChannel make_channel() {
  ChannelOptions options;
  options.geometry.small_buffer_count = 64;
  options.geometry.large_buffer_count = 4;
  options.geometry.request_capacity = 16;
  options.geometry.reply_capacity = 16;
  options.geometry.loan_capacity = 8;
  options.small_loans = 4;
  options.large_loans = 1;
  auto channel = WorkerChannel::create(options);
  EXPECT_TRUE(channel.ok()) << (channel.ok() ? "" : channel.message());
  return std::move(channel).value();
}

void submit(WorkerChannel& channel, std::uint64_t id, const TraceContext& trace) {
  OutgoingRequest request;
  ASSERT_TRUE(channel.try_alloc(8, request.lease));
  request.length = 8;
  request.meta.request_id = id;
  request.meta.user_cookie = id;
  request.meta.trace_flags = trace.flags;
  std::memcpy(request.meta.trace_id, trace.trace_id.data(), 16);
  std::memcpy(request.meta.parent_span_id, trace.parent_span_id.data(), 8);
  ASSERT_EQ(channel.try_submit_burst(&request, 1, axon::shm::PriorityClass::interactive), 1u);
}

std::string hex(const std::uint8_t* bytes, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 0xf];
  }
  return out;
}

TEST(Traceparent, ParsesAndFormatsTheW3CText) {
  TraceContext t;
  ASSERT_TRUE(axon::sdk::parse_traceparent(kTraceparent, t));
  EXPECT_EQ(hex(t.trace_id.data(), 16), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(hex(t.parent_span_id.data(), 8), "00f067aa0ba902b7");
  EXPECT_EQ(t.flags, 1);
  EXPECT_TRUE(t.sampled());
  EXPECT_TRUE(t.valid());
  axon::shm::Descriptor d{};
  std::memcpy(d.trace_id, t.trace_id.data(), 16);
  std::memcpy(d.parent_span_id, t.parent_span_id.data(), 8);
  d.trace_flags = t.flags;
  EXPECT_STREQ(axon::sdk::request_traceparent(d).data(), kTraceparent);
  // No handler span yet: no handler traceparent.
  EXPECT_STREQ(axon::sdk::span_traceparent(d).data(), "");
}

TEST(Traceparent, RejectsMalformedText) {
  TraceContext t;
  for (const char* bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",  // short
                          "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // version
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",     // upper case
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",     // zero trace
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",     // zero span
                          "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",     // separator
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"}) {  // hex
    EXPECT_FALSE(axon::sdk::parse_traceparent(bad, t)) << bad;
  }
}

TEST(SdkTrace, HandlerSpanIsMadePerTracedRequestAndCarriedInTheReply) {
  WorkerChannel channel = make_channel();
  auto attached = axon::sdk::Worker::attach(dup(channel.segment_fd()), channel.generation());
  ASSERT_TRUE(attached) << attached.message();
  axon::sdk::Worker& worker = attached.value();
  TraceContext traced;
  ASSERT_TRUE(axon::sdk::parse_traceparent(kTraceparent, traced));
  constexpr std::uint64_t kTraced = 6;
  for (std::uint64_t id = 1; id <= kTraced; ++id) submit(channel, id, traced);
  submit(channel, 100, TraceContext{});  // no trace context

  Request burst[axon::sdk::Worker::kMaxBurst];
  const std::uint32_t n = worker.receive_burst(burst, axon::sdk::Worker::kMaxBurst);
  ASSERT_EQ(n, kTraced + 1);
  std::set<std::string> spans;
  std::string handler_span[kTraced + 1];
  for (std::uint32_t i = 0; i < n; ++i) {
    const Request& r = burst[i];
    if (r.meta.request_id == 100) {
      EXPECT_FALSE(r.has_trace());
      EXPECT_STREQ(r.traceparent().data(), "");
      EXPECT_STREQ(r.handler_traceparent().data(), "");
      EXPECT_EQ(r.trace().span_id, (std::array<std::uint8_t, 8>{}));
    } else {
      ASSERT_TRUE(r.has_trace());
      const TraceContext t = r.trace();
      EXPECT_TRUE(t.sampled());
      EXPECT_NE(t.span_id, (std::array<std::uint8_t, 8>{})) << "the handler's span is never zero";
      EXPECT_STREQ(r.traceparent().data(), kTraceparent);
      const std::string mine = r.handler_traceparent().data();
      EXPECT_EQ(mine, "00-4bf92f3577b34da6a3ce929d0e0e4736-" + hex(t.span_id.data(), 8) + "-01");
      // The handler's traceparent parses back to the same trace with its span as the parent.
      TraceContext child;
      ASSERT_TRUE(axon::sdk::parse_traceparent(mine, child));
      EXPECT_EQ(child.trace_id, traced.trace_id);
      EXPECT_EQ(child.parent_span_id, t.span_id);
      spans.insert(hex(t.span_id.data(), 8));
      handler_span[r.meta.request_id] = hex(t.span_id.data(), 8);
    }
    ASSERT_TRUE(worker.try_complete(r, worker.in_place(r), 0));
  }
  EXPECT_EQ(spans.size(), kTraced) << "every request gets its own span";
  ASSERT_TRUE(worker.try_flush());

  Completion done[16];
  const std::uint32_t replies = channel.poll_replies(done, 16);
  ASSERT_EQ(replies, n);
  for (std::uint32_t i = 0; i < replies; ++i) {
    const std::uint64_t id = done[i].reply.request_id;
    if (id == 100) {
      EXPECT_EQ(hex(done[i].reply.span_id, 8), "0000000000000000");
    } else {
      EXPECT_EQ(hex(done[i].reply.span_id, 8), handler_span[id]) << "request " << id;
      EXPECT_EQ(hex(done[i].reply.parent_span_id, 8), "00f067aa0ba902b7");
    }
    channel.finish(done[i]);
  }
}

TEST(CApiTrace, RequestTraceAndTraceparents) {
  WorkerChannel channel = make_channel();
  axon_worker* worker = nullptr;
  ASSERT_EQ(axon_worker_attach_fd(dup(channel.segment_fd()), channel.generation(), &worker), AXON_OK)
      << axon_worker_last_error();
  TraceContext traced;
  ASSERT_TRUE(axon::sdk::parse_traceparent(kTraceparent, traced));
  submit(channel, 1, traced);
  submit(channel, 2, TraceContext{});
  axon_request requests[AXON_WORKER_MAX_BURST];
  ASSERT_EQ(axon_worker_receive_burst(worker, requests, AXON_WORKER_MAX_BURST), 2);

  axon_trace_context t;
  ASSERT_EQ(axon_request_trace(&requests[0], &t), 1);
  EXPECT_EQ(t.valid, 1);
  EXPECT_EQ(t.sampled, 1);
  EXPECT_EQ(t.flags, 1);
  EXPECT_EQ(hex(t.trace_id, 16), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(hex(t.parent_span_id, 8), "00f067aa0ba902b7");
  EXPECT_NE(hex(t.span_id, 8), "0000000000000000");
  char text[AXON_TRACEPARENT_SIZE];
  ASSERT_EQ(axon_request_traceparent(&requests[0], text, sizeof text), 1);
  EXPECT_STREQ(text, kTraceparent);
  ASSERT_EQ(axon_request_handler_traceparent(&requests[0], text, sizeof text), 1);
  EXPECT_EQ(std::string(text), "00-4bf92f3577b34da6a3ce929d0e0e4736-" + hex(t.span_id, 8) + "-01");

  axon_trace_context none;
  EXPECT_EQ(axon_request_trace(&requests[1], &none), 0);
  EXPECT_EQ(none.valid, 0);
  EXPECT_EQ(hex(none.span_id, 8), "0000000000000000");
  EXPECT_EQ(axon_request_traceparent(&requests[1], text, sizeof text), 0);
  EXPECT_STREQ(text, "");
  EXPECT_EQ(axon_request_handler_traceparent(&requests[1], text, sizeof text), 0);

  // Bad arguments are refused with a message, never written past.
  EXPECT_EQ(axon_request_traceparent(&requests[0], text, AXON_TRACEPARENT_SIZE - 1), AXON_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(axon_worker_last_error()).find("AXON_TRACEPARENT_SIZE"), std::string::npos);
  axon_request forged = requests[0];
  std::memset(forged.internal_, 0, sizeof forged.internal_);
  EXPECT_EQ(axon_request_trace(&forged, &t), AXON_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(axon_request_trace(nullptr, &t), AXON_ERR_INVALID_ARGUMENT);

  // The reply carries the handler's span.
  axon_buffer buffer;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(axon_worker_in_place(worker, &requests[i], &buffer), AXON_OK);
    ASSERT_EQ(axon_worker_complete(worker, &requests[i], &buffer, 0, AXON_REPLY_OK), AXON_OK);
  }
  ASSERT_EQ(axon_worker_try_flush(worker), AXON_OK);
  Completion done[4];
  ASSERT_EQ(channel.poll_replies(done, 4), 2u);
  EXPECT_EQ(hex(done[0].reply.span_id, 8), hex(t.span_id, 8));
  EXPECT_EQ(hex(done[1].reply.span_id, 8), "0000000000000000");
  channel.finish(done[0]);
  channel.finish(done[1]);
  axon_worker_close(worker);
}

}  // namespace
