// Trace context end to end (docs/protocol.md §5, issue 15): the real axon-dataplane with XDP on
// a veth pair of this test's own (prefix axtr), a real echo_worker that logs the trace context
// its handler saw (--trace-log), and an AXP client in the namespace.
//
// - A traced request: the handler sees the request's traceparent, and the RESPONSE's span_id is
//   the handler's own span (made by the worker SDK), whose parent is the request's span_id.
// - A request without trace context: the handler sees none, the reply's span_id is zero.
// - A malformed context (exactly one of trace_id and span_id zero) is counted in
//   trace_context_invalid and replaced by a fresh one for the handler; the reply echoes what the
//   client sent with a zero span_id. Reserved trace_flags bits are not malformed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "axon/bpf/xdp_program.h"
#include "axon/dataplane/trace_ring.h"
#include "axon/testing/it_support.h"

namespace axon::dataplane::it {
namespace {

using protocol::Header;
using protocol::MessageType;
using protocol::SpanId;
using protocol::TraceId;

// What the handler saw of one request (a line of echo_worker --trace-log).
struct Seen {
  std::string traceparent;
  std::string handler_traceparent;
};

class TraceContextIT : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    axon::testing::NetworkSpec spec;
    spec.prefix = "axtr";
    net_ = TestNetwork::create(spec, net_error_).release();
  }
  static void TearDownTestSuite() {
    delete net_;
    net_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: it creates a namespace, a veth pair and attaches XDP";
    ASSERT_NE(net_, nullptr) << "cannot create the test network: " << net_error_;
    dir_ = std::make_unique<TempDir>();
    daemon_ = std::make_unique<Daemon>(dir_->path());
    ConfigSpec spec;
    spec.backend = "xdp";
    std::string error;
    ASSERT_TRUE(daemon_->start(make_config(*net_, dir_->path(), spec) + telemetry_, &error)) << error;
    ASSERT_TRUE(daemon_->wait_ready(30s, &error)) << error;
    trace_log_ = dir_->path() + "/trace.log";
    ASSERT_TRUE(worker_.start({AXON_ECHO_WORKER_BIN, "--trace-log", trace_log_},
                              {"AXON_WORKER_SOCKET=" + daemon_->socket_path("w0")}, dir_->path() + "/worker.log",
                              &error))
        << error;
    ASSERT_TRUE(eventually([&] { return daemon_->stats().worker_state(0) == WorkerSlotState::alive; }));
  }

  void TearDown() override {
    if (daemon_ && daemon_->running()) {
      EXPECT_EQ(daemon_->stop(), std::optional<int>(0));
    }
    if (net_ != nullptr) {
      auto q = bpf::query_attached(net_->root_ifindex);
      if (q && q->program_id != 0) {
        ADD_FAILURE() << "an XDP program was left attached";
        run_command({"ip", "link", "set", "dev", net_->root_if, "xdp", "off"});
      }
    }
    if (HasFailure()) {
      if (daemon_) std::cerr << "---- axon-dataplane log:\n" << daemon_->log() << "----\n";
      if (dir_) dir_->keep();
    }
    worker_.kill_now();
    daemon_.reset();
    dir_.reset();
  }

  // Sends each request and returns its reply, by request id.
  std::map<std::uint64_t, Received> exchange(const std::vector<Header>& requests) {
    std::map<std::uint64_t, Received> replies;
    AxpClient client(*net_, AF_INET);
    EXPECT_TRUE(client.ok());
    for (const Header& h : requests) EXPECT_TRUE(client.send(h, pattern_payload(32, std::uint8_t(h.request_id))));
    for (Received& r : client.receive_n(requests.size(), kPatience)) replies[r.header.request_id] = std::move(r);
    EXPECT_EQ(replies.size(), requests.size());
    return replies;
  }

  // The handler's view of each traced request, by request id (the worker flushes every line).
  std::map<std::uint64_t, Seen> handler_log(std::size_t want) {
    std::map<std::uint64_t, Seen> seen;
    eventually([&] {
      seen.clear();
      std::ifstream in(trace_log_);
      std::string line;
      while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::uint64_t id = 0;
        Seen s;
        if (fields >> id >> s.traceparent >> s.handler_traceparent) seen[id] = s;
      }
      return seen.size() >= want;
    });
    return seen;
  }

  static std::string hex(std::span<const std::uint8_t> bytes) {
    std::string out;
    static const char digits[] = "0123456789abcdef";
    for (std::uint8_t b : bytes) {
      out += digits[b >> 4];
      out += digits[b & 0xf];
    }
    return out;
  }

  static TestNetwork* net_;
  static std::string net_error_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  ChildProcess worker_;
  std::string trace_log_;
  std::string telemetry_;  // appended to the config
};

TestNetwork* TraceContextIT::net_ = nullptr;
std::string TraceContextIT::net_error_;

TEST_F(TraceContextIT, ReplyCarriesTheHandlersSpanWhoseParentIsTheRequestsSpan) {
  std::vector<Header> requests;
  for (int i = 0; i < 8; ++i) {
    Header h = request_header(1, 7);  // fresh trace context, sampled
    if (i % 2 == 1) h.trace_flags = 0;
    requests.push_back(h);
  }
  Header untraced = request_header(1, 7);
  untraced.trace_id = TraceId{};
  untraced.span_id = SpanId{};
  requests.push_back(untraced);
  auto replies = exchange(requests);
  auto seen = handler_log(requests.size() - 1);
  for (const Header& h : requests) {
    ASSERT_TRUE(replies.count(h.request_id)) << h.request_id;
    const Header& reply = replies[h.request_id].header;
    ASSERT_EQ(reply.type, MessageType::response);
    EXPECT_EQ(reply.trace_id, h.trace_id);
    EXPECT_EQ(reply.trace_flags, h.trace_flags);
    if (h.request_id == untraced.request_id) {
      EXPECT_EQ(reply.span_id, SpanId{}) << "no trace context: no span";
      EXPECT_EQ(seen.count(h.request_id), 0u) << "the handler saw trace context that was not sent";
      continue;
    }
    ASSERT_TRUE(seen.count(h.request_id)) << "the handler logged no trace context for " << h.request_id;
    EXPECT_NE(reply.span_id, SpanId{});
    EXPECT_NE(reply.span_id, h.span_id);
    // The handler saw the request's context, and the reply carries the handler's span.
    EXPECT_EQ(seen[h.request_id].traceparent, protocol::to_traceparent(h.trace_id, h.span_id, h.trace_flags));
    EXPECT_EQ(seen[h.request_id].handler_traceparent,
              protocol::to_traceparent(h.trace_id, reply.span_id, h.trace_flags));
  }
  EXPECT_EQ(daemon_->stats().lcores(&LcoreStats::trace_context_invalid), 0u);
}

TEST_F(TraceContextIT, MalformedContextIsCountedAndReplacedForTheHandler) {
  Header no_span = request_header(1, 7);  // trace id set, span zero
  no_span.span_id = SpanId{};
  Header no_trace = request_header(1, 7);  // span set, trace id zero
  no_trace.trace_id = TraceId{};
  Header reserved_flags = request_header(1, 7);  // valid context, reserved flag bits: not malformed
  reserved_flags.trace_flags = 0x03;
  auto replies = exchange({no_span, no_trace, reserved_flags});
  auto seen = handler_log(3);
  ASSERT_EQ(replies.size(), 3u);
  ASSERT_EQ(seen.size(), 3u) << "every request reached the handler with (fresh) trace context";

  EXPECT_TRUE(eventually([&] { return daemon_->stats().lcores(&LcoreStats::trace_context_invalid) == 2; }))
      << daemon_->stats().lcores(&LcoreStats::trace_context_invalid);

  for (const Header* h : {&no_span, &no_trace}) {
    const Header& reply = replies[h->request_id].header;
    EXPECT_EQ(reply.type, MessageType::response);
    // The reply echoes what was sent, with no span (§5), so the client matches it by request_id.
    EXPECT_EQ(reply.trace_id, h->trace_id);
    EXPECT_EQ(reply.span_id, SpanId{});
    // The handler got a fresh, valid context: neither the sent trace id nor the sent span.
    const std::string& tp = seen[h->request_id].traceparent;
    ASSERT_EQ(tp.size(), 55u) << tp;
    EXPECT_NE(tp.substr(3, 32), hex(h->trace_id)) << tp;
    EXPECT_NE(tp.substr(3, 32), std::string(32, '0')) << tp;
    EXPECT_NE(tp.substr(36, 16), std::string(16, '0')) << tp;
    EXPECT_EQ(tp.substr(53), h->trace_flags == 1 ? "01" : "00") << tp;
    EXPECT_EQ(seen[h->request_id].handler_traceparent.substr(0, 36), tp.substr(0, 36));
  }
  const Header& reply = replies[reserved_flags.request_id].header;
  EXPECT_EQ(reply.trace_flags, 0x03);
  EXPECT_EQ(seen[reserved_flags.request_id].traceparent,
            protocol::to_traceparent(reserved_flags.trace_id, reserved_flags.span_id, 0x03));
  EXPECT_EQ(seen[reserved_flags.request_id].handler_traceparent,
            protocol::to_traceparent(reserved_flags.trace_id, reply.span_id, 0x03));
}

// ---- Sampled traces (the trace file, trace_ring.h): read the way the control plane does.

std::vector<SpanRecord> drain_traces(TraceReader& reader, std::size_t want) {
  std::vector<SpanRecord> records;
  eventually([&] {
    reader.drain([&](const SpanRecord& r) { records.push_back(r); });
    return records.size() >= want;
  });
  return records;
}

TEST_F(TraceContextIT, SampledRequestsLeaveOneRecordWithEveryHopInOrder) {
  auto reader = TraceReader::open(daemon_->run_dir() + "/dataplane.traces");
  ASSERT_TRUE(reader) << reader.message();
  EXPECT_EQ(reader->sample_ppm(), 0u);
  std::vector<Header> requests;
  for (int i = 0; i < 6; ++i) {
    Header h = request_header(1, 7);  // sampled
    if (i >= 4) h.trace_flags = 0;    // traced but not sampled: no record (rate 0)
    requests.push_back(h);
  }
  auto replies = exchange(requests);
  ASSERT_EQ(replies.size(), requests.size());
  auto records = drain_traces(*reader, 4);
  ASSERT_EQ(records.size(), 4u);
  // Nothing more arrives for the unsampled two once the sampled replies are all recorded.
  EXPECT_TRUE(eventually([&] { return reader->written() == 4; })) << reader->written();
  EXPECT_EQ(reader->dropped(), 0u);
  for (const SpanRecord& r : records) {
    const Header* h = nullptr;
    for (const Header& q : requests) {
      if (q.request_id == r.request_id) h = &q;
    }
    ASSERT_NE(h, nullptr) << "a record for a request never sent: " << r.request_id;
    ASSERT_EQ(h->trace_flags, protocol::kTraceSampled) << "an unsampled request was recorded";
    EXPECT_EQ(0, std::memcmp(r.trace_id, h->trace_id.data(), 16));
    EXPECT_EQ(0, std::memcmp(r.parent_span_id, h->span_id.data(), 8)) << "the appliance's parent is the request's span";
    EXPECT_EQ(0, std::memcmp(r.handler_span_id, replies[r.request_id].header.span_id.data(), 8))
        << "the handler's span is the one the RESPONSE carried";
    EXPECT_NE(hex(r.appliance_span_id), std::string(16, '0'));
    EXPECT_EQ(r.sampled_by, std::uint8_t(SampledBy::flag));
    EXPECT_EQ(r.tenant_id, 1u);
    EXPECT_EQ(r.agent_id, 7u);
    EXPECT_NE(r.hop_ns[kTraceRx], 0u);
    for (std::size_t hop = 1; hop < kTraceHops; ++hop) {
      EXPECT_GE(r.hop_ns[hop], r.hop_ns[hop - 1]) << "hop " << hop << " before hop " << hop - 1;
    }
  }
}

// [telemetry] trace_sample_rate = 1: requests the client did not sample are traced too, with
// the handler seeing them sampled; without trace context they get a fresh one (not counted).
class TraceSampleRateIT : public TraceContextIT {
 protected:
  TraceSampleRateIT() { telemetry_ = "\n[telemetry]\ntrace_sample_rate = 1\n"; }
};

TEST_F(TraceSampleRateIT, HeadSamplingTracesUnsampledRequests) {
  auto reader = TraceReader::open(daemon_->run_dir() + "/dataplane.traces");
  ASSERT_TRUE(reader) << reader.message();
  EXPECT_EQ(reader->sample_ppm(), 1'000'000u);
  Header unsampled = request_header(1, 7);
  unsampled.trace_flags = 0;
  Header untraced = request_header(1, 7);
  untraced.trace_id = TraceId{};
  untraced.span_id = SpanId{};
  untraced.trace_flags = 0;
  auto replies = exchange({unsampled, untraced});
  ASSERT_EQ(replies.size(), 2u);
  auto records = drain_traces(*reader, 2);
  ASSERT_EQ(records.size(), 2u);
  for (const SpanRecord& r : records) EXPECT_EQ(r.sampled_by, std::uint8_t(SampledBy::rate));
  // The replies are as the client sent them: flags echoed, no span without trace context.
  EXPECT_EQ(replies[unsampled.request_id].header.trace_flags, 0);
  EXPECT_EQ(replies[untraced.request_id].header.span_id, SpanId{});
  auto seen = handler_log(2);
  EXPECT_EQ(seen[unsampled.request_id].traceparent.substr(53), "01") << "the handler sees it sampled";
  EXPECT_EQ(seen[untraced.request_id].traceparent.size(), 55u) << "a fresh context for the handler";
  EXPECT_EQ(daemon_->stats().lcores(&LcoreStats::trace_context_invalid), 0u);
}

}  // namespace
}  // namespace axon::dataplane::it
