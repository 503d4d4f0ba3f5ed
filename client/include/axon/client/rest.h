// A small HTTP/1.1 client for the control plane's REST API, on Boost.Beast: HTTPS (OpenSSL,
// TLS 1.2 or newer, certificate and host name verified, optional client certificate for mTLS), plain
// HTTP over TCP, or plain HTTP over a unix socket. One connection per request.
//
// Built for axonctl: every failure comes back as a RestError with a message an operator can
// act on ("cannot connect to https://127.0.0.1:9443: Connection refused; is
// axon-controlplane running? (see --api)"). No OpenSSL, Asio or Beast type appears here.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "axon/common/result.h"

namespace axon::client {

struct RestOptions {
  std::string url = "https://127.0.0.1:9443";  // https://host[:port] or http://host[:port]; [v6] in brackets
  std::string unix_socket;                     // non-empty: plain HTTP over this socket instead of url
  std::string token;                           // sent as "Authorization: Bearer <token>" when non-empty
  std::string ca_file;                         // PEM CA bundle; "" = the system store
  bool insecure = false;                       // skip certificate and host name verification
  std::string client_cert, client_key;         // PEM; both or neither (mTLS)
  std::chrono::milliseconds timeout{10000};    // connect, and each read or write
  std::size_t max_response_bytes = 64u << 20;
  // Names the option that sets the address in connection errors ("see --api").
  std::string address_hint = "--api";
  std::string unix_hint = "--unix";
  // Other users of the client (the control plane's OTLP exporter): the server named in
  // connection errors, and more request headers (name, value).
  std::string server_name = "axon-controlplane";
  std::string user_agent = "axonctl";  // who is asking, for the server's logs
  std::vector<std::pair<std::string, std::string>> headers;
};

struct RestResponse {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // names as received
  std::string body;

  // The first header with this name (case-insensitive), or "".
  std::string header(std::string_view name) const;
};

enum class RestError {
  invalid_argument,  // bad URL, unreadable CA/cert/key file
  connect_failed,    // resolve or connect failed
  tls_failed,        // handshake or certificate verification failed
  timeout,           // no progress within the timeout
  io_error,          // the connection broke mid-request
  bad_response,      // not HTTP, or too large
};

class RestClient {
 public:
  // Parses the URL and prepares TLS (CA, client certificate); connects only on request().
  static Result<RestClient, RestError> create(RestOptions options);

  RestClient(RestClient&&) noexcept;
  RestClient& operator=(RestClient&&) noexcept;
  ~RestClient();

  // Sends one request (body as application/json when non-empty) and reads the response.
  Result<RestResponse, RestError> request(std::string_view method, std::string_view path, std::string_view body = {});

  // "https://127.0.0.1:9443" or "unix:/run/axon/api.sock": where requests go.
  const std::string& endpoint() const;

  // True when certificate verification is off (--insecure on an https URL).
  bool insecure() const;

  struct Impl;

 private:
  explicit RestClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Splits an HTTP/1.1 response (headers and a Content-Length, chunked or until-close body)
// held entirely in `raw`. Exposed for tests.
Result<RestResponse, RestError> parse_http_response(std::string_view raw);

}  // namespace axon::client
