// axon::client against a real axon-baseline-server process on 127.0.0.1 (echo, id and trace
// echo, ERROR replies), and against scripted fake servers for what a real server will not do on
// demand (silence, garbage, BUSY, IPv6).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
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
using axon::client::RequestOptions;
using axon::client::TraceContext;
using axon::client::testing::FakeServer;
using namespace std::chrono_literals;

std::vector<std::uint8_t> bytes(const std::string& s) {
  return {s.begin(), s.end()};
}

RequestOptions to(std::uint32_t tenant, std::uint32_t agent) {
  RequestOptions r;
  r.tenant = tenant;
  r.agent = agent;
  return r;
}

CallOptions within(std::chrono::milliseconds timeout, unsigned busy_retries = 0) {
  CallOptions o;
  o.timeout = timeout;
  o.busy_retries = busy_retries;
  return o;
}

// One axon-baseline-server for the whole suite: port 0, and the chosen port read from the
// "listening on" line it prints once it is ready.
class BaselineServer {
 public:
  bool start() {
    int out[2];
    if (pipe(out) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      // --duration bounds the server even if this test process dies without cleaning up.
      execl(AXON_BASELINE_SERVER, AXON_BASELINE_SERVER, "--port", "0", "--bind", "127.0.0.1", "--workers", "2",
            "--tenants", "1", "--agents", "1-100", "--duration", "120", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    std::string text;
    char buf[256];
    std::uint64_t give_up = axon::monotonic_ns() + 10'000'000'000ull;
    while (text.find('\n') == std::string::npos && axon::monotonic_ns() < give_up) {
      pollfd pfd{out[0], POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      ssize_t n = read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    close(out[0]);
    auto at = text.find("127.0.0.1:");
    if (at == std::string::npos) return false;
    port_ = static_cast<std::uint16_t>(std::stoi(text.substr(at + 10)));
    return port_ != 0;
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 500; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = status;
        pid_ = -1;
        return;
      }
      usleep(10'000);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::uint16_t port() const { return port_; }
  int exit_status() const { return exit_status_; }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  int exit_status_ = -1;
};

BaselineServer* g_server = nullptr;

class ClientVsBaseline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g_server = new BaselineServer;
    ASSERT_TRUE(g_server->start()) << "could not start " << AXON_BASELINE_SERVER;
  }
  static void TearDownTestSuite() {
    g_server->stop();
    // SIGTERM is a clean shutdown: the server reaps its workers and exits 0.
    EXPECT_TRUE(WIFEXITED(g_server->exit_status()) && WEXITSTATUS(g_server->exit_status()) == 0);
    delete g_server;
    g_server = nullptr;
  }
  Client open() {
    auto c = Client::open("127.0.0.1", g_server->port());
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.message());
    return std::move(c.value());
  }
};

TEST_F(ClientVsBaseline, EchoRoundTrip) {
  Client c = open();
  RequestOptions req = to(1, 42);
  auto reply = c.call(req, bytes("hello"), within(2s));
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(reply->type, p::MessageType::response);
  EXPECT_EQ(reply->error_code, p::ErrorCode::none);
  EXPECT_EQ(std::string(reply->payload.begin(), reply->payload.end()), "hello");
  EXPECT_GT(reply->rtt_ns, 0u);
  EXPECT_EQ(reply->attempts, 1u);
  EXPECT_EQ(c.counters().sent, 1u);
  EXPECT_EQ(c.counters().replies, 1u);
}

TEST_F(ClientVsBaseline, RequestIdAndTraceAreEchoedAndTheTraceContinues) {
  Client c = open();
  TraceContext trace = TraceContext::generate();
  RequestOptions req = to(1, 7);
  req.session_key = 99;
  req.trace = trace;
  auto sent = c.send_request(req, bytes("traced"));
  ASSERT_TRUE(sent.ok()) << sent.message();
  auto reply = c.wait_reply(*sent, 2s);
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(reply->request_id, sent->request_id);
  EXPECT_EQ(reply->header.request_id, sent->request_id);
  EXPECT_EQ(reply->trace_id, trace.trace_id);
  EXPECT_EQ(reply->trace_flags, trace.flags);
  // The responder's span is new, and its parent is the span we sent.
  EXPECT_EQ(reply->parent_span_id, trace.span_id);
  EXPECT_NE(reply->span_id, trace.span_id);
  EXPECT_NE(reply->span_id, p::SpanId{});
  EXPECT_EQ(reply->header.tenant_id, 1u);
  EXPECT_EQ(reply->header.agent_id, 7u);
  EXPECT_EQ(reply->header.session_key, 99u);
  EXPECT_EQ(reply->traceparent().substr(0, 36), "00-" + trace.traceparent().substr(3, 33));
}

TEST_F(ClientVsBaseline, NoTraceContextMeansNoneInTheReply) {
  Client c = open();
  auto reply = c.call(to(1, 1), bytes("x"), within(2s));
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_FALSE(reply->has_trace());
  EXPECT_EQ(reply->traceparent(), "");
}

TEST_F(ClientVsBaseline, UnknownAgentGetsError) {
  Client c = open();
  auto reply = c.call(to(1, 9999), bytes("who"), within(2s));
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(reply->type, p::MessageType::error);
  EXPECT_EQ(reply->error_code, p::ErrorCode::unknown_agent);
  EXPECT_FALSE(reply->ok());
}

TEST_F(ClientVsBaseline, UnknownTenantGetsError) {
  Client c = open();
  auto reply = c.call(to(77, 1), bytes("who"), within(2s));
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(reply->type, p::MessageType::error);
  EXPECT_EQ(reply->error_code, p::ErrorCode::unknown_tenant);
}

TEST_F(ClientVsBaseline, PipelinedRequestsAreMatchedInAnyOrder) {
  Client c = open();
  std::vector<axon::client::SentRequest> sent;
  for (int i = 0; i < 16; ++i) {
    auto s = c.send_request(to(1, static_cast<std::uint32_t>(1 + i)), bytes("req-" + std::to_string(i)));
    ASSERT_TRUE(s.ok()) << s.message();
    sent.push_back(*s);
  }
  for (int i = 15; i >= 0; --i) {
    auto reply = c.wait_reply(sent[static_cast<std::size_t>(i)], 2s);
    ASSERT_TRUE(reply.ok()) << reply.message();
    EXPECT_EQ(std::string(reply->payload.begin(), reply->payload.end()), "req-" + std::to_string(i));
  }
  EXPECT_EQ(c.counters().unmatched, 0u);
}

TEST_F(ClientVsBaseline, PayloadLargerThanAnAxpMessageIsRefused) {
  Client c = open();
  std::vector<std::uint8_t> big(65537, 'z');
  auto reply = c.call(to(1, 1), big);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.code(), ClientError::invalid_argument);
  EXPECT_EQ(c.counters().sent, 0u);
}

// A UDP socket the test controls, standing in for a server that misbehaves.
TEST(ClientTimeouts, NoReplyTimesOutWithinTheBudget) {
  FakeServer silent;
  ASSERT_TRUE(silent.ok());
  auto c = Client::open("127.0.0.1", silent.port());
  ASSERT_TRUE(c.ok()) << c.message();
  auto start = std::chrono::steady_clock::now();
  auto reply = c->call(to(1, 1), bytes("anyone?"), within(150ms));
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.code(), ClientError::timeout);
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(c->counters().timeouts, 1u);
  EXPECT_FALSE(silent.receive(100).empty()) << "the request should have reached the server";
}

TEST(ClientTimeouts, ALateReplyIsCountedAsUnmatched) {
  FakeServer slow;
  ASSERT_TRUE(slow.ok());
  auto c = Client::open("127.0.0.1", slow.port());
  ASSERT_TRUE(c.ok());
  auto first = c->call(to(1, 1), bytes("one"), within(50ms));
  ASSERT_FALSE(first.ok());
  auto req = slow.receive();
  ASSERT_FALSE(req.empty());
  p::Header h = p::decode_header(req);
  slow.reply(p::make_reply(h, p::MessageType::response, p::random_span_id()), {});  // too late now

  // The next call sees the stale reply first, counts it, and still times out on its own.
  auto second = c->call(to(1, 1), bytes("two"), within(100ms));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(c->counters().unmatched, 1u);
  EXPECT_EQ(c->counters().timeouts, 2u);
}

TEST(ClientErrors, NothingListeningIsConnectionRefused) {
  std::uint16_t port;
  {
    FakeServer gone;  // take a free port, then close it
    port = gone.port();
  }
  auto c = Client::open("127.0.0.1", port);
  ASSERT_TRUE(c.ok());
  auto reply = c->call(to(1, 1), bytes("x"), within(1s));
  ASSERT_FALSE(reply.ok());
  // Loopback delivers the ICMP error at once; a timeout would also be acceptable behaviour.
  EXPECT_TRUE(reply.code() == ClientError::connection_refused || reply.code() == ClientError::timeout);
}

TEST(ClientValidation, InvalidAndUnmatchedDatagramsAreIgnoredAndCounted) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  std::thread server([&fake] {
    auto req = fake.receive();
    if (req.empty()) return;
    p::Header h = p::decode_header(req);
    std::vector<std::uint8_t> garbage{'n', 'o', 't', ' ', 'a', 'x', 'p', '!', 0, 0};
    fake.send(garbage);                             // bad magic: invalid
    std::vector<std::uint8_t> request_again = req;  // a REQUEST is never a reply: invalid
    fake.send(request_again);
    p::Header other = p::make_reply(h, p::MessageType::response, p::random_span_id());
    other.request_id = h.request_id + 1000;  // valid, but nobody asked: unmatched
    fake.reply(other, {});
    std::vector<std::uint8_t> lying(p::kHeaderLen + 4);
    lying.resize(p::encode_datagram(p::make_reply(h, p::MessageType::response, p::random_span_id()),
                                    std::vector<std::uint8_t>{1, 2, 3, 4}, lying));
    lying.pop_back();  // payload_len now lies: invalid
    fake.send(lying);
    fake.reply(p::make_reply(h, p::MessageType::response, p::random_span_id()), std::vector<std::uint8_t>{'o', 'k'});
  });
  auto reply = c->call(to(1, 1), bytes("q"), within(2s));
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(std::string(reply->payload.begin(), reply->payload.end()), "ok");
  EXPECT_EQ(c->counters().invalid, 3u);
  EXPECT_EQ(c->counters().unmatched, 1u);
}

TEST(ClientBusy, BusyIsRetriedAfterTheHintWithTheSameRequestId) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  std::uint64_t first_id = 0, second_id = 0;
  std::uint64_t busy_sent_ns = 0, retry_seen_ns = 0;
  std::thread server([&] {
    auto req = fake.receive();
    if (req.empty()) return;
    p::Header h = p::decode_header(req);
    first_id = h.request_id;
    busy_sent_ns = axon::monotonic_ns();
    fake.reply(p::make_busy_reply(h, 20'000, p::random_span_id()), {});  // retry after 20 ms
    auto again = fake.receive();
    if (again.empty()) return;
    retry_seen_ns = axon::monotonic_ns();
    p::Header h2 = p::decode_header(again);
    second_id = h2.request_id;
    fake.reply(p::make_reply(h2, p::MessageType::response, p::random_span_id()), p::payload_of(again));
  });
  auto reply = c->call(to(1, 1), bytes("again"), within(2s, 3));
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(reply->type, p::MessageType::response);
  EXPECT_EQ(reply->attempts, 2u);
  EXPECT_EQ(first_id, second_id);
  EXPECT_GE(retry_seen_ns - busy_sent_ns, 19'000'000u) << "the retry must honour retry_after_us";
}

// docs/protocol.md §6 both ways: a request longer than one datagram goes out as segments of
// S = ceil(len / count) bytes (count = ceil(len / M)), each with the full header; a segmented
// reply is reassembled in any order, duplicates ignored, before call() returns it.
TEST(ClientSegments, LongRequestIsSegmentedAndASegmentedReplyIsReassembled) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  std::vector<std::uint8_t> message(65536);
  for (std::size_t i = 0; i < message.size(); ++i) message[i] = std::uint8_t(i * 7 + i / 256);
  std::vector<p::Header> headers;
  std::vector<std::uint8_t> got(message.size());
  std::thread server([&] {
    for (;;) {
      auto seg = fake.receive();
      if (seg.empty()) return;
      ASSERT_EQ(p::validate_request(seg), p::Reason::ok);
      p::Header h = p::decode_header(seg);
      headers.push_back(h);
      const std::size_t size = (h.message_len + h.segment_count - 1) / h.segment_count;
      auto body = p::payload_of(seg);
      std::copy(body.begin(), body.end(), got.begin() + std::ptrdiff_t(h.segment_index * size));
      if (headers.size() == h.segment_count) break;
    }
    // The echo back in 3 segments of 21846, 21846 and 21844 bytes, last first, the middle twice.
    p::Header r = p::make_reply(headers[0], p::MessageType::response, p::random_span_id());
    r.segment_count = 3;
    r.message_len = std::uint32_t(message.size());
    const std::size_t size = (message.size() + 2) / 3;
    for (std::uint16_t i : {std::uint16_t(2), std::uint16_t(1), std::uint16_t(1), std::uint16_t(0)}) {
      const std::size_t piece = std::min(size, message.size() - i * size);
      r.segment_index = i;
      r.payload_len = std::uint16_t(piece);
      std::vector<std::uint8_t> out(p::kHeaderLen + piece);
      (void)p::encode_header(r, out);
      std::copy_n(message.begin() + std::ptrdiff_t(i * size), piece, out.begin() + p::kHeaderLen);
      fake.send(out);
    }
  });
  auto reply = c->call(to(1, 1), message, within(3s));
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.message();
  // 1472-byte datagrams: M = 1392, so 48 segments of S = ceil(65536 / 48) = 1366 bytes.
  ASSERT_EQ(headers.size(), 48u);
  for (std::size_t i = 0; i < headers.size(); ++i) {
    EXPECT_EQ(headers[i].segment_index, i);
    EXPECT_EQ(headers[i].segment_count, 48u);
    EXPECT_EQ(headers[i].message_len, 65536u);
    EXPECT_EQ(headers[i].payload_len, i + 1 < headers.size() ? 1366u : 65536u - 47u * 1366u);
    EXPECT_EQ(headers[i].request_id, headers[0].request_id);
  }
  EXPECT_EQ(got, message);
  EXPECT_EQ(reply->type, p::MessageType::response);
  EXPECT_EQ(reply->payload, message);
  EXPECT_EQ(c->counters().replies, 1u);
  EXPECT_EQ(c->counters().invalid, 0u);
}

// A reply segment whose length breaks the §6 rule is not put together: counted, the call times out.
TEST(ClientSegments, AReplySegmentBreakingTheRuleIsCountedInvalid) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  std::thread server([&] {
    auto req = fake.receive();
    if (req.empty()) return;
    p::Header r = p::make_reply(p::decode_header(req), p::MessageType::response, p::random_span_id());
    r.segment_count = 2;
    r.message_len = 100;  // S = 50: a 49-byte segment 0 is impossible
    r.segment_index = 0;
    r.payload_len = 49;
    std::vector<std::uint8_t> out(p::kHeaderLen + 49);
    (void)p::encode_header(r, out);
    fake.send(out);
  });
  auto reply = c->call(to(1, 1), bytes("x"), within(200ms));
  server.join();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.code(), ClientError::timeout);
  EXPECT_EQ(c->counters().invalid, 1u);
}

// Segments of two replies to one request id (two attempts that both ran) are never mixed: a
// segment with another span_id starts the reply over.
TEST(ClientSegments, SegmentsOfAnotherReplyStartOver) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  auto send_segment = [&](p::Header r, std::uint16_t index, char fill) {
    r.segment_count = 2;
    r.message_len = 10;
    r.segment_index = index;
    r.payload_len = 5;
    std::vector<std::uint8_t> out(p::kHeaderLen + 5, std::uint8_t(fill));
    (void)p::encode_header(r, out);
    fake.send(out);
  };
  std::thread server([&] {
    auto req = fake.receive();
    if (req.empty()) return;
    p::Header h = p::decode_header(req);
    p::Header first = p::make_reply(h, p::MessageType::response, p::random_span_id());
    p::Header second = p::make_reply(h, p::MessageType::response, p::random_span_id());
    send_segment(first, 0, 'a');
    send_segment(second, 1, 'B');
    send_segment(second, 0, 'A');
  });
  RequestOptions req = to(1, 1);
  req.trace = TraceContext::generate();
  auto reply = c->call(req, bytes("x"), within(2s));
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(std::string(reply->payload.begin(), reply->payload.end()), "AAAAABBBBB");
}

TEST(ClientBusy, BusyWithoutRetriesIsReturnedAsIs) {
  FakeServer fake;
  ASSERT_TRUE(fake.ok());
  auto c = Client::open("127.0.0.1", fake.port());
  ASSERT_TRUE(c.ok());
  std::thread server([&] {
    auto req = fake.receive();
    if (!req.empty()) fake.reply(p::make_busy_reply(p::decode_header(req), 500, p::random_span_id()), {});
  });
  auto reply = c->call(to(1, 1), bytes("x"), within(2s));
  server.join();
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->type, p::MessageType::busy);
  EXPECT_EQ(reply->retry_after_us, 500u);
}

TEST(ClientIpv6, RoundTripOverIpv6Loopback) {
  FakeServer fake(AF_INET6);
  if (!fake.ok()) GTEST_SKIP() << "no IPv6 loopback here";
  auto c = Client::open("::1", fake.port());
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->peer(), "[::1]:" + std::to_string(fake.port()));
  std::thread server([&] {
    auto req = fake.receive();
    if (!req.empty())
      fake.reply(p::make_reply(p::decode_header(req), p::MessageType::response, p::random_span_id()),
                 p::payload_of(req));
  });
  auto reply = c->call(to(1, 1), bytes("six"), within(2s));
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(std::string(reply->payload.begin(), reply->payload.end()), "six");
}

TEST(HostPort, ParsesNamesV4AndV6) {
  auto a = axon::client::parse_host_port("10.0.0.1:7401", 7400);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "10.0.0.1");
  EXPECT_EQ(a->port, 7401);
  auto b = axon::client::parse_host_port("appliance", 7400);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "appliance");
  EXPECT_EQ(b->port, 7400);
  auto c = axon::client::parse_host_port("[fd00::1]:9", 7400);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "fd00::1");
  EXPECT_EQ(c->port, 9);
  auto d = axon::client::parse_host_port("::1", 7400);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->host, "::1");
  EXPECT_EQ(d->port, 7400);
  EXPECT_FALSE(axon::client::parse_host_port("host:0", 7400).ok());
  EXPECT_FALSE(axon::client::parse_host_port("host:65536", 7400).ok());
  EXPECT_FALSE(axon::client::parse_host_port("[::1", 7400).ok());
  EXPECT_FALSE(axon::client::parse_host_port("", 7400).ok());
}

}  // namespace
