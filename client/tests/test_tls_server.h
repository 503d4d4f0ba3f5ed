// A tiny scripted HTTP/1.1 server for the REST client tests: TLS (OpenSSL, optional client
// certificate check), plain TCP or a unix socket, one connection at a time on its own
// thread, answering each request with whatever the test's handler returns.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace axon::testing {

struct RecordedRequest {
  std::string method, path, body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string header(const std::string& name) const;  // case-insensitive; "" if absent
};

// Generates a self-signed EC certificate with the given subjectAltName (e.g.
// "IP:127.0.0.1,DNS:localhost") into dir/<stem>.crt and dir/<stem>.key with the openssl
// CLI. Returns false (and fails the test) when openssl fails.
bool generate_certificate(const std::string& openssl, const std::string& dir, const std::string& stem,
                          const std::string& san);

class TestHttpServer {
 public:
  enum class Mode { tls, tcp, unix_socket };
  struct Options {
    Mode mode = Mode::tls;
    std::string cert_file, key_file;  // tls
    std::string client_ca_file;       // tls: non-empty = require a client certificate
    std::string unix_path;            // unix_socket
    std::string greeting;             // tcp: sent on accept, then the connection is closed
  };
  // Returns the raw response bytes to send.
  using Handler = std::function<std::string(const RecordedRequest&)>;

  static std::unique_ptr<TestHttpServer> start(const Options& options, Handler handler);
  ~TestHttpServer();

  std::uint16_t port() const { return port_; }
  std::vector<RecordedRequest> requests() const;
  // TLS handshakes that failed on the server side (e.g. the client rejected our cert).
  int failed_handshakes() const { return failed_handshakes_.load(); }

  // A complete response with Content-Length.
  static std::string response(int status, const std::string& reason, const std::string& body,
                              const std::string& extra_headers = "");

 private:
  TestHttpServer() = default;
  void serve();
  void handle(int fd);

  Options options_;
  Handler handler_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  void* ctx_ = nullptr;  // SSL_CTX*
  std::atomic<bool> stop_{false};
  std::atomic<int> failed_handshakes_{0};
  mutable std::mutex mutex_;
  std::vector<RecordedRequest> requests_;
  std::thread thread_;
};

}  // namespace axon::testing
