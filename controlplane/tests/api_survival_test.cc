// What the REST API's HTTP layer must survive: idle and slow clients, connection floods,
// oversized heads and bodies, ambiguous framing, pipelining and malformed request lines.
// Real HTTPS and plain TCP on 127.0.0.1 against an in-memory ControlApi.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "axon/controlplane/api_server.h"

#include "api_test_support.h"

namespace axon::controlplane {
namespace {

using nlohmann::json;
using testing::FakeControlApi;
using testing::HttpResult;
using testing::TestPki;
using testing::TlsClient;
using testing::TlsClientOptions;

const bool kSigpipeIgnored = [] { return std::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();

using Clock = std::chrono::steady_clock;

std::string header(const HttpResult& r, const std::string& name) {
  const auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

class ApiSurvivalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TestPki();
    tokens_file_ = pki_->path("tokens");
    auto admin = TokenStore::create(tokens_file_, "ops-admin", Role::admin);
    ASSERT_TRUE(admin.ok()) << admin.message();
    admin_ = new std::string(admin.value());
  }
  static void TearDownTestSuite() {
    delete admin_;
    delete pki_;
  }
  void SetUp() override { ASSERT_TRUE(kSigpipeIgnored); }

  // The shipped defaults (threads, connection cap, timeouts) on an ephemeral port.
  static ApiServerOptions defaults() {
    ApiServerOptions o;
    o.listen = "127.0.0.1:0";
    o.cert_file = pki_->path("server.crt");
    o.key_file = pki_->path("server.key");
    o.tokens_file = tokens_file_;
    o.audit_log = pki_->path("audit.log");
    return o;
  }
  static TlsClientOptions client() {
    TlsClientOptions c;
    c.ca_file = pki_->path("ca.crt");
    return c;
  }
  // Sends raw bytes over TLS and reads one response.
  static HttpResult raw_tls(std::uint16_t port, const std::string& bytes) {
    TlsClient c(port, client());
    if (!c.ok()) {
      HttpResult r;
      r.error = c.error;
      return r;
    }
    if (!c.send(bytes)) {
      HttpResult r;
      r.error = "send failed";
      return r;
    }
    return c.read_response();
  }

  static inline TestPki* pki_ = nullptr;
  static inline std::string tokens_file_;
  static inline std::string* admin_ = nullptr;
};

// Issue 11 item 18: idle, unauthenticated clients never starve the API.
TEST_F(ApiSurvivalTest, HealthAnswersWithinASecondWhile200IdleConnectionsAreOpen) {
  FakeControlApi api;
  auto server = ApiServer::start(defaults(), api);
  ASSERT_TRUE(server.ok()) << server.message();
  const auto port = server.value()->tcp_port();

  // 100 TLS clients that finish the handshake and then say nothing, and 100 TCP clients
  // that never start it.
  std::vector<std::unique_ptr<TlsClient>> tls_idle;
  std::vector<int> tcp_idle;
  for (int i = 0; i < 100; ++i) {
    tls_idle.push_back(std::make_unique<TlsClient>(port, client()));
    ASSERT_TRUE(tls_idle.back()->ok()) << "idle TLS client " << i << ": " << tls_idle.back()->error;
    const int fd = testing::connect_tcp(port);
    ASSERT_GE(fd, 0) << "idle TCP client " << i;
    tcp_idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    const auto r = testing::https(port, client(), "GET", "/v1/health", "");
    const auto took = Clock::now() - t0;
    EXPECT_EQ(r.status, 200) << "attempt " << i << ": " << r.error;
    EXPECT_LT(took, std::chrono::seconds(1))
        << "attempt " << i << " took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  }
  // The idle clients are still connected (they were not evicted to make room).
  int still_open = 0;
  for (const int fd : tcp_idle) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) ++still_open;
  }
  EXPECT_EQ(still_open, 100);
  for (const int fd : tcp_idle) ::close(fd);
}

TEST_F(ApiSurvivalTest, HeaderBlockOverTheLimitIs431) {
  FakeControlApi api;
  auto server = ApiServer::start(defaults(), api);
  ASSERT_TRUE(server.ok()) << server.message();
  const auto port = server.value()->tcp_port();
  // Complete but too large, and too large without ever ending.
  auto r = raw_tls(port, "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(20 * 1024, 'a') + "\r\n\r\n");
  EXPECT_EQ(r.status, 431) << r.error;
  EXPECT_EQ(header(r, "connection"), "close");
  r = raw_tls(port, "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(40 * 1024, 'a'));
  EXPECT_EQ(r.status, 431) << r.error;
  EXPECT_EQ(testing::https(port, client(), "GET", "/v1/health", "").status, 200);
}

TEST_F(ApiSurvivalTest, BodyOverTheLimitIs413) {
  FakeControlApi api;
  ApiServerOptions o = defaults();
  o.max_body_bytes = 1024;
  auto server = ApiServer::start(o, api);
  ASSERT_TRUE(server.ok()) << server.message();
  const auto port = server.value()->tcp_port();
  // Sent in full, and only announced: both refused from Content-Length, before the token is
  // even looked at.
  auto r = testing::https(port, client(), "PUT", "/v1/tenants/1", *admin_, std::string(2000, ' ') + "{}");
  EXPECT_EQ(r.status, 413) << r.error;
  r = raw_tls(port, "PUT /v1/tenants/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n");
  EXPECT_EQ(r.status, 413) << r.error;
  EXPECT_EQ(header(r, "connection"), "close");
  // At the limit is fine.
  r = testing::https(port, client(), "PUT", "/v1/tenants/1", *admin_, R"({"name":"a"})" + std::string(1024 - 12, ' '));
  EXPECT_EQ(r.status, 200) << r.error << r.body;
}

TEST_F(ApiSurvivalTest, SlowClientSendingAByteASecondIsTimedOutOthersUnaffected) {
  FakeControlApi api;
  ApiServerOptions o = defaults();
  o.read_timeout_ms = 2500;
  o.threads = 1;
  auto server = ApiServer::start(o, api);
  ASSERT_TRUE(server.ok()) << server.message();
  const auto port = server.value()->tcp_port();

  TlsClient slow(port, client());
  ASSERT_TRUE(slow.ok()) << slow.error;
  const std::string head = "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(60, 'a') + "\r\n\r\n";
  const auto t0 = Clock::now();
  bool dropped = false;
  for (std::size_t i = 0; i < head.size() && !dropped; ++i) {
    if (!slow.send(head.substr(i, 1))) break;
    // Meanwhile everyone else is served at once.
    const auto t1 = Clock::now();
    EXPECT_EQ(testing::https(port, client(), "GET", "/v1/health", "").status, 200);
    EXPECT_LT(Clock::now() - t1, std::chrono::milliseconds(500));
    pollfd p{slow.fd(), POLLIN, 0};
    dropped = ::poll(&p, 1, 1000) > 0;  // readable = close_notify or EOF
  }
  EXPECT_TRUE(dropped) << "a client sending a byte a second kept its connection for the whole head";
  EXPECT_TRUE(slow.closed_by_peer());
  const auto held = Clock::now() - t0;
  EXPECT_GE(held, std::chrono::milliseconds(2000));
  EXPECT_LT(held, std::chrono::milliseconds(5000));
}

TEST_F(ApiSurvivalTest, ConnectionFloodBeyondTheThreadCountIsServed) {
  FakeControlApi api;
  ApiServerOptions o = defaults();
  o.threads = 2;
  auto server = ApiServer::start(o, api);
  ASSERT_TRUE(server.ok()) << server.message();
  const auto port = server.value()->tcp_port();
  // 40 clients at once, 20 times the threads; half of them hold their connection open
  // (keep-alive) after their answer.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  std::vector<std::unique_ptr<TlsClient>> held(20);
  for (int i = 0; i < 40; ++i) {
    clients.emplace_back([&, i] {
      auto c = std::make_unique<TlsClient>(port, client());
      if (!c->ok()) return;
      if (!c->send(testing::request_text("GET", "/v1/agents", *admin_, "", "", i % 2 == 0))) return;
      if (c->read_response().status == 200) ++ok;
      if (i % 2 == 0) held[static_cast<std::size_t>(i / 2)] = std::move(c);
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 40);
  const auto t0 = Clock::now();
  EXPECT_EQ(testing::https(port, client(), "GET", "/v1/health", "").status, 200);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));
}

TEST_F(ApiSurvivalTest, PipelinedRequestsAreAnsweredInOrder) {
  FakeControlApi api;
  auto server = ApiServer::start(defaults(), api);
  ASSERT_TRUE(server.ok()) << server.message();
  TlsClient c(server.value()->tcp_port(), client());
  ASSERT_TRUE(c.ok()) << c.error;
  // Three requests in one write: a change with a body, a read of it, and a 404.
  ASSERT_TRUE(c.send(testing::request_text("PUT", "/v1/tenants/5", *admin_, R"({"name":"five"})", "", true) +
                     testing::request_text("GET", "/v1/tenants/5", *admin_, "", "", true) +
                     testing::request_text("GET", "/v1/tenants/6", *admin_, "", "", false)));
  auto r = c.read_response();
  EXPECT_EQ(r.status, 200) << r.error;
  r = c.read_response();
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(json::parse(r.body)["name"], "five");
  r = c.read_response();
  EXPECT_EQ(r.status, 404) << r.error;
  EXPECT_EQ(header(r, "connection"), "close");
}

TEST_F(ApiSurvivalTest, ContentLengthWithTransferEncodingIs400) {
  FakeControlApi api;
  auto server = ApiServer::start(defaults(), api);
  ASSERT_TRUE(server.ok()) << server.message();
  const auto port = server.value()->tcp_port();
  const std::string auth = "Authorization: Bearer " + *admin_ + "\r\n";
  for (const std::string framing :
       {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"}) {
    const auto r = raw_tls(port, "PUT /v1/tenants/7 HTTP/1.1\r\nHost: x\r\n" + auth + framing + "\r\n0\r\n\r\n");
    EXPECT_EQ(r.status, 400) << framing << r.error;
    EXPECT_EQ(header(r, "connection"), "close");
  }
  EXPECT_EQ(testing::https(port, client(), "GET", "/v1/tenants/7", *admin_).status, 404) << "a smuggled PUT ran";
}

// Moved here from api_unit_test's head parser tests: the same heads, now refused by the
// server end to end (and audited, although they never reached routing).
TEST_F(ApiSurvivalTest, MalformedRequestLinesAreRefused) {
  FakeControlApi api;
  ApiServerOptions o = defaults();
  o.audit_log = pki_->path("malformed-audit.log");
  auto server = ApiServer::start(o, api);
  ASSERT_TRUE(server.ok()) << server.message();
  const auto port = server.value()->tcp_port();
  const std::vector<std::pair<std::string, int>> cases = {
      {"GET /x\r\n\r\n", 400},
      {"GET /x HTTP/2.0\r\n\r\n", 505},
      {"GET x HTTP/1.1\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nNoColon\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
      {"G(T /x HTTP/1.1\r\n\r\n", 400},
      {"GET /a\x01z HTTP/1.1\r\n\r\n", 400},
      {"GET  /x HTTP/1.1\r\n\r\n", 400},
  };
  for (const auto& [text, status] : cases) {
    const auto r = raw_tls(port, text);
    EXPECT_EQ(r.status, status) << "for " << ::testing::PrintToString(text) << ": " << r.error;
    EXPECT_EQ(header(r, "connection"), "close");
    EXPECT_EQ(header(r, "content-type"), "application/json");
  }
  std::istringstream audit(testing::read_file(o.audit_log));
  std::string line;
  std::size_t lines = 0;
  while (std::getline(audit, line)) {
    const json j = json::parse(line);
    EXPECT_EQ(j["method"], "-");
    EXPECT_EQ(j["result"], "error");
    ++lines;
  }
  EXPECT_EQ(lines, cases.size());
  // Blank lines before a request line are tolerated (RFC 9112 2.2); a 204 has no body and
  // no Content-Length.
  testing::https(port, client(), "PUT", "/v1/tenants/2", *admin_, R"({"name":"b"})");
  const auto r = raw_tls(port, "\r\n\r\nDELETE /v1/tenants/2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + *admin_ +
                                   "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 204) << r.error;
  EXPECT_EQ(r.headers.count("content-length"), 0u);
  EXPECT_EQ(header(r, "connection"), "close");
}

}  // namespace
}  // namespace axon::controlplane
