// axon::client::RestClient against real sockets: HTTPS with a certificate the test generates
// (verified, rejected, skipped with insecure, mTLS), HTTP over a unix socket, refused
// connections and timeouts; and the HTTP response parser on its own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "axon/client/rest.h"

#include "test_tls_server.h"

namespace axon::client {
namespace {

using axon::testing::RecordedRequest;
using axon::testing::TestHttpServer;

TEST(ParseHttpResponse, ContentLengthChunkedAndErrors) {
  auto r = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->reason, "OK");
  EXPECT_EQ(r->body, "{}");
  EXPECT_EQ(r->header("x-a"), "b");
  EXPECT_EQ(r->header("missing"), "");

  auto chunked =
      parse_http_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  ASSERT_TRUE(chunked.ok()) << chunked.message();
  EXPECT_EQ(chunked->body, "abcde");

  auto until_close = parse_http_response("HTTP/1.0 404 Not Found\r\n\r\n{\"error\":\"x\"}");
  ASSERT_TRUE(until_close.ok());
  EXPECT_EQ(until_close->status, 404);
  EXPECT_EQ(until_close->body, "{\"error\":\"x\"}");

  auto no_content = parse_http_response("HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_TRUE(no_content.ok());
  EXPECT_EQ(no_content->body, "");

  EXPECT_FALSE(parse_http_response("SSH-2.0-OpenSSH\r\n\r\n").ok());
  EXPECT_FALSE(parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").ok());
  EXPECT_FALSE(parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").ok());
  EXPECT_FALSE(parse_http_response("HTTP/1.1 2x0 OK\r\n\r\n").ok());
  EXPECT_FALSE(parse_http_response("").ok());
}

TEST(RestClientOptions, RejectsBadUrlsAndFiles) {
  for (const char* url :
       {"ftp://host", "https://", "https://host:0", "https://host:99999", "https://host/v1", "https://[::1"}) {
    RestOptions o;
    o.url = url;
    auto c = RestClient::create(o);
    ASSERT_FALSE(c.ok()) << url;
    EXPECT_EQ(c.code(), RestError::invalid_argument) << url;
  }
  RestOptions o;
  o.ca_file = "/nonexistent/ca.pem";
  auto c = RestClient::create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("/nonexistent/ca.pem"), std::string::npos) << c.message();
  RestOptions half;
  half.client_cert = "/tmp/x.crt";
  EXPECT_FALSE(RestClient::create(half).ok());
}

class RestTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string("/tmp/axon-ops-rest-" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    ASSERT_TRUE(axon::testing::generate_certificate(AXON_OPENSSL_BIN, *dir_, "server", "IP:127.0.0.1,DNS:localhost"));
    ASSERT_TRUE(axon::testing::generate_certificate(AXON_OPENSSL_BIN, *dir_, "other", "DNS:other.example"));
    ASSERT_TRUE(axon::testing::generate_certificate(AXON_OPENSSL_BIN, *dir_, "client", "DNS:axonctl"));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string file(const char* name) { return *dir_ + "/" + name; }

  static std::unique_ptr<TestHttpServer> serve(const char* stem, TestHttpServer::Handler handler,
                                               const std::string& client_ca = "") {
    TestHttpServer::Options o;
    o.cert_file = file(stem) + ".crt";
    o.key_file = file(stem) + ".key";
    o.client_ca_file = client_ca;
    return TestHttpServer::start(o, std::move(handler));
  }
  static TestHttpServer::Handler ok_handler() {
    return [](const RecordedRequest&) { return TestHttpServer::response(200, "OK", "{\"ok\":true}"); };
  }
  static RestOptions options_for(const TestHttpServer& server, const std::string& host = "127.0.0.1") {
    RestOptions o;
    o.url = "https://" + host + ":" + std::to_string(server.port());
    o.ca_file = file("server.crt");
    o.timeout = std::chrono::milliseconds(3000);
    return o;
  }

  static std::string* dir_;
};
std::string* RestTls::dir_ = nullptr;

TEST_F(RestTls, VerifiedRequestCarriesTokenBodyAndHeaders) {
  auto server = serve("server", [](const RecordedRequest& r) {
    return TestHttpServer::response(201, "Created", "{\"echo\":" + r.body + "}", "X-Test: yes\r\n");
  });
  ASSERT_TRUE(server);
  RestOptions o = options_for(*server);
  o.token = "secret-token";
  auto client = RestClient::create(o);
  ASSERT_TRUE(client.ok()) << client.message();
  EXPECT_FALSE(client->insecure());
  auto r = client->request("POST", "/v1/agents", "{\"name\":\"echo\"}");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "{\"echo\":{\"name\":\"echo\"}}");
  EXPECT_EQ(r->header("X-Test"), "yes");

  auto seen = server->requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/v1/agents");
  EXPECT_EQ(seen[0].header("Authorization"), "Bearer secret-token");
  EXPECT_EQ(seen[0].header("Content-Type"), "application/json");
  EXPECT_EQ(seen[0].header("Content-Length"), "15");
  EXPECT_EQ(seen[0].header("Host"), "127.0.0.1:" + std::to_string(server->port()));

  // Host names are checked too: localhost is in the certificate's SAN.
  auto by_name = RestClient::create(options_for(*server, "localhost"));
  ASSERT_TRUE(by_name.ok());
  auto r2 = by_name->request("GET", "/v1/status");
  ASSERT_TRUE(r2.ok()) << r2.message();
  EXPECT_EQ(r2->status, 201);
  EXPECT_EQ(server->requests().back().header("Host"), "localhost:" + std::to_string(server->port()));
}

TEST_F(RestTls, UntrustedCertificateFailsUnlessInsecure) {
  auto server = serve("server", ok_handler());
  ASSERT_TRUE(server);
  RestOptions o = options_for(*server);
  o.ca_file = file("other.crt");  // trusts someone else
  auto client = RestClient::create(o);
  ASSERT_TRUE(client.ok());
  auto r = client->request("GET", "/v1/status");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), RestError::tls_failed);
  EXPECT_NE(r.message().find("certificate verification failed"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("--ca"), std::string::npos) << r.message();

  o.insecure = true;
  auto loose = RestClient::create(o);
  ASSERT_TRUE(loose.ok());
  EXPECT_TRUE(loose->insecure());
  auto ok = loose->request("GET", "/v1/status");
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(server->requests().size(), 1u) << "the rejected handshake must not have sent the request";
}

TEST_F(RestTls, HostNameMismatchFails) {
  auto server = serve("other", ok_handler());  // certificate for other.example only
  ASSERT_TRUE(server);
  RestOptions o = options_for(*server);
  o.ca_file = file("other.crt");
  auto client = RestClient::create(o);
  ASSERT_TRUE(client.ok());
  auto r = client->request("GET", "/v1/status");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), RestError::tls_failed);
  EXPECT_NE(r.message().find("mismatch"), std::string::npos) << r.message();
  EXPECT_TRUE(server->requests().empty());
}

TEST_F(RestTls, MutualTlsNeedsTheClientCertificate) {
  auto server = serve("server", ok_handler(), file("client.crt"));
  ASSERT_TRUE(server);
  RestOptions o = options_for(*server);
  auto anonymous = RestClient::create(o);
  ASSERT_TRUE(anonymous.ok());
  auto refused = anonymous->request("GET", "/v1/status");
  EXPECT_FALSE(refused.ok());

  o.client_cert = file("client.crt");
  o.client_key = file("client.key");
  auto with_cert = RestClient::create(o);
  ASSERT_TRUE(with_cert.ok()) << with_cert.message();
  auto r = with_cert->request("GET", "/v1/status");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(server->requests().size(), 1u);
}

TEST_F(RestTls, PlainHttpServerGivesAClearTlsError) {
  // Like a plain HTTP server, it answers a TLS ClientHello with an HTTP error.
  TestHttpServer::Options plain;
  plain.mode = TestHttpServer::Mode::tcp;
  plain.greeting = TestHttpServer::response(400, "Bad Request", "{\"error\":\"not HTTP\"}");
  auto greeter = TestHttpServer::start(plain, ok_handler());
  ASSERT_TRUE(greeter);
  auto client = RestClient::create(options_for(*greeter));
  ASSERT_TRUE(client.ok());
  auto r = client->request("GET", "/v1/status");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), RestError::tls_failed) << r.message();
  EXPECT_NE(r.message().find("try http://"), std::string::npos) << r.message();

  plain.greeting.clear();
  auto server = TestHttpServer::start(plain, ok_handler());
  ASSERT_TRUE(server);

  RestOptions http;
  http.url = "http://127.0.0.1:" + std::to_string(server->port());
  auto h = RestClient::create(http);
  ASSERT_TRUE(h.ok());
  auto ok = h->request("GET", "/v1/health");
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(ok->body, "{\"ok\":true}");
}

TEST_F(RestTls, SilentServerTimesOut) {
  auto server = serve("server", [](const RecordedRequest&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    return TestHttpServer::response(200, "OK", "{}");
  });
  ASSERT_TRUE(server);
  RestOptions o = options_for(*server);
  o.timeout = std::chrono::milliseconds(300);
  auto client = RestClient::create(o);
  ASSERT_TRUE(client.ok());
  // Had the client waited for the answer, it would have succeeded: a timeout error is proof
  // that it gave up first.
  auto r = client->request("GET", "/v1/status");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), RestError::timeout) << r.message();
  EXPECT_NE(r.message().find("no response from https://127.0.0.1:"), std::string::npos) << r.message();
}

TEST(RestClient, RefusedConnectionSaysWhatToCheck) {
  // A port nobody listens on: bind one, learn its number, close it.
  TestHttpServer::Options plain;
  plain.mode = TestHttpServer::Mode::tcp;
  std::uint16_t port = 0;
  {
    auto server = TestHttpServer::start(plain, [](const RecordedRequest&) { return std::string(); });
    ASSERT_TRUE(server);
    port = server->port();
  }
  RestOptions o;
  o.url = "https://127.0.0.1:" + std::to_string(port);
  auto client = RestClient::create(o);
  ASSERT_TRUE(client.ok());
  auto r = client->request("GET", "/v1/status");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), RestError::connect_failed);
  EXPECT_EQ(r.message(), "cannot connect to https://127.0.0.1:" + std::to_string(port) +
                             ": Connection refused; is axon-controlplane running? (see --api)");
}

TEST(RestClient, UnixSocketSpeaksPlainHttp) {
  TestHttpServer::Options o;
  o.mode = TestHttpServer::Mode::unix_socket;
  o.unix_path = "/tmp/axon-ops-rest-" + std::to_string(getpid()) + ".sock";
  auto server = TestHttpServer::start(
      o, [](const RecordedRequest& r) { return TestHttpServer::response(200, "OK", "{\"path\":\"" + r.path + "\"}"); });
  ASSERT_TRUE(server);
  RestOptions ro;
  ro.unix_socket = o.unix_path;
  auto client = RestClient::create(ro);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->endpoint(), "unix:" + o.unix_path);
  auto r = client->request("DELETE", "/v1/agents/echo");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->body, "{\"path\":\"/v1/agents/echo\"}");
  ASSERT_EQ(server->requests().size(), 1u);
  EXPECT_EQ(server->requests()[0].method, "DELETE");
  EXPECT_EQ(server->requests()[0].header("Authorization"), "");

  server.reset();
  auto gone = client->request("GET", "/v1/status");
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.message().find("(see --unix)"), std::string::npos) << gone.message();
}

}  // namespace
}  // namespace axon::client
