// HTTP/1.1 client of the REST API on Boost.Beast over Boost.Asio: TLS through Asio's OpenSSL
// stream (TLS 1.2 or newer, certificate and host name verified, optional client certificate
// for mTLS), plain HTTP over TCP, or plain HTTP over a unix socket. One connection per
// request ("Connection: close"); axonctl sends one request per run.
//
// Every step (resolve and connect, handshake, write, read) runs asynchronously on a private
// io_context under the same per-step timeout, so a silent server gives a timeout error, and
// Beast's parser reads the response (Content-Length, chunked or until close, with a size
// limit).
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>

#include "axon/client/rest.h"

namespace axon::client {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using unix_proto = net::local::stream_protocol;
using error_code = boost::system::error_code;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && lower(a) == lower(b);
}

// The newest OpenSSL error as text, and the queue cleared.
std::string openssl_error() {
  unsigned long code = ERR_get_error();
  std::string text;
  if (code != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    const char* reason = ERR_reason_error_string(code);
    text = reason != nullptr ? reason : buffer;
  }
  ERR_clear_error();
  return text.empty() ? "unknown TLS error" : text;
}

using Parser = bhttp::response_parser<bhttp::string_body>;

RestResponse to_response(const bhttp::response<bhttp::string_body>& r) {
  RestResponse out;
  out.status = static_cast<int>(r.result_int());
  out.reason = std::string(r.reason());
  for (const auto& field : r) out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  out.body = r.body();
  return out;
}

std::string parse_error_text(const error_code& ec) {
  if (ec == bhttp::error::bad_version) {
    return "not an HTTP/1.x response (is the URL scheme right? https:// for the TCP API)";
  }
  if (ec == bhttp::error::partial_message) return "truncated response";
  if (ec == bhttp::error::body_limit) return "response too large";
  return ec.message();
}

struct Url {
  bool tls = true;
  std::string host;  // without brackets
  std::string port;
};

std::optional<Url> parse_url(const std::string& text, std::string& why) {
  Url url;
  std::string_view rest = text;
  if (rest.substr(0, 8) == "https://") {
    rest.remove_prefix(8);
  } else if (rest.substr(0, 7) == "http://") {
    url.tls = false;
    rest.remove_prefix(7);
  } else {
    why = "'" + text + "' is not an http:// or https:// URL";
    return std::nullopt;
  }
  std::size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    if (rest.substr(slash) != "/") {
      why = "'" + text + "': give the API's base address without a path";
      return std::nullopt;
    }
    rest = rest.substr(0, slash);
  }
  if (!rest.empty() && rest.front() == '[') {
    std::size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      why = "'" + text + "': unterminated [IPv6] address";
      return std::nullopt;
    }
    url.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      why = "'" + text + "': expected :port after ]";
      return std::nullopt;
    }
  } else {
    std::size_t colon = rest.find(':');
    url.host = std::string(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon);
  }
  if (!rest.empty()) url.port = std::string(rest.substr(1));
  if (url.port.empty()) url.port = url.tls ? "443" : "80";
  unsigned port = 0;
  auto [p, e] = std::from_chars(url.port.data(), url.port.data() + url.port.size(), port);
  if (e != std::errc() || p != url.port.data() + url.port.size() || port == 0 || port > 65535) {
    why = "'" + text + "': bad port '" + url.port + "'";
    return std::nullopt;
  }
  if (url.host.empty()) {
    why = "'" + text + "': no host";
    return std::nullopt;
  }
  return url;
}

bool is_ip_literal(const std::string& host) {
  in6_addr a6{};
  in_addr a4{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

}  // namespace

struct RestClient::Impl {
  RestOptions options;
  Url url;
  std::string endpoint;
  std::optional<ssl::context> tls;

  std::string connect_advice(const error_code& ec) const;
  std::string request_text(std::string_view method, std::string_view path, std::string_view body) const;
};

std::string RestClient::Impl::connect_advice(const error_code& ec) const {
  const int err = ec == beast::error::timeout ? ETIMEDOUT : ec.value();
  std::string message = "cannot connect to " + endpoint + ": " + std::strerror(err);
  if (err == ECONNREFUSED || err == ENOENT || err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH) {
    message += "; is " + options.server_name + " running? (see " +
               (options.unix_socket.empty() ? options.address_hint : options.unix_hint) + ")";
  } else if (err == EACCES || err == EPERM) {
    message += "; the unix socket is for root only: run as root or use the HTTPS API (" + options.address_hint + ")";
  }
  return message;
}

std::string RestClient::Impl::request_text(std::string_view method, std::string_view path,
                                           std::string_view body) const {
  std::string request;
  request.reserve(256 + body.size());
  request.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  request.append("Host: ").append(url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host);
  if (options.unix_socket.empty()) request.append(":").append(url.port);
  request.append("\r\nUser-Agent: ").append(options.user_agent);
  request.append("\r\nAccept: application/json\r\nConnection: close\r\n");
  if (!options.token.empty()) request.append("Authorization: Bearer ").append(options.token).append("\r\n");
  for (const auto& [name, value] : options.headers) request.append(name).append(": ").append(value).append("\r\n");
  if (!body.empty() || method == "POST" || method == "PUT") {
    if (!body.empty()) request.append("Content-Type: application/json\r\n");
    request.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  request.append("\r\n").append(body);
  return request;
}

namespace {

// One request on one connection: connect, (handshake), write, read, each under the timeout.
template <typename Stream>
class Exchange {
 public:
  Exchange(RestClient::Impl& d, Stream& stream) : d_(d), stream_(stream) {}

  Result<RestResponse, RestError> run(net::io_context& ioc, const std::string& request) {
    request_ = request;
    parser_.header_limit(64 * 1024);
    parser_.body_limit(d_.options.max_response_bytes);
    write();
    ioc.run();
    return std::move(result_);
  }

 private:
  auto& lowest() { return beast::get_lowest_layer(stream_); }

  void write() {
    lowest().expires_after(d_.options.timeout);
    net::async_write(stream_, net::buffer(request_), [this](const error_code& ec, std::size_t) {
      if (ec) return fail("sending to", ec);
      read();
    });
  }

  void read() {
    lowest().expires_after(d_.options.timeout);
    bhttp::async_read(stream_, buffer_, parser_, [this](const error_code& ec, std::size_t) {
      if (ec == bhttp::error::body_limit) {
        result_ = make_error(RestError::bad_response, "response from " + d_.endpoint + " larger than " +
                                                          std::to_string(d_.options.max_response_bytes) + " bytes");
        return;
      }
      // A server closing without TLS close_notify is not an error once the response is whole.
      if (ec && !(ec == ssl::error::stream_truncated && parser_.is_done())) {
        if (ec == beast::error::timeout) {
          result_ = make_error(RestError::timeout, "no response from " + d_.endpoint + " within " +
                                                       std::to_string(d_.options.timeout.count()) + " ms");
          return;
        }
        if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category() ||
            (ec == bhttp::error::end_of_stream && parser_.got_some())) {
          result_ =
              make_error(RestError::bad_response, "bad response from " + d_.endpoint + ": " + parse_error_text(ec));
          return;
        }
        if (ec == bhttp::error::end_of_stream) {
          result_ = make_error(RestError::bad_response, "bad response from " + d_.endpoint +
                                                            ": the server closed the connection without a response");
          return;
        }
        return fail("reading from", ec);
      }
      result_ = to_response(parser_.get());
    });
  }

  void fail(const char* what, const error_code& ec) {
    if (ec == beast::error::timeout) {
      result_ = make_error(RestError::timeout, std::string("no response from ") + d_.endpoint + " within " +
                                                   std::to_string(d_.options.timeout.count()) + " ms");
      return;
    }
    result_ = make_error(RestError::io_error, std::string(what) + " " + d_.endpoint + " failed: " + ec.message());
  }

  RestClient::Impl& d_;
  Stream& stream_;
  std::string request_;
  beast::flat_buffer buffer_;
  Parser parser_;
  Result<RestResponse, RestError> result_ = make_error(RestError::io_error, "no response");
};

}  // namespace

std::string RestResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return v;
  }
  return {};
}

Result<RestResponse, RestError> parse_http_response(std::string_view raw) {
  if (raw.empty()) return make_error(RestError::bad_response, "the server closed the connection without a response");
  Parser parser;
  parser.eager(true);
  parser.header_limit(64 * 1024);
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  error_code ec;
  std::size_t used = 0;
  while (!ec && used < raw.size() && !parser.is_done()) {
    const std::size_t n = parser.put(net::buffer(raw.data() + used, raw.size() - used), ec);
    if (n == 0 && !ec) break;
    used += n;
  }
  if (ec == bhttp::error::need_more) ec = {};
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec) return make_error(RestError::bad_response, parse_error_text(ec));
  if (!parser.is_done()) return make_error(RestError::bad_response, "truncated response");
  return to_response(parser.get());
}

RestClient::RestClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RestClient::RestClient(RestClient&&) noexcept = default;
RestClient& RestClient::operator=(RestClient&&) noexcept = default;
RestClient::~RestClient() = default;

const std::string& RestClient::endpoint() const {
  return impl_->endpoint;
}

bool RestClient::insecure() const {
  return impl_->tls.has_value() && impl_->options.insecure;
}

Result<RestClient, RestError> RestClient::create(RestOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const RestOptions& o = impl->options;
  if (!o.unix_socket.empty()) {
    impl->endpoint = "unix:" + o.unix_socket;
    impl->url.tls = false;
    impl->url.host = "localhost";
    return RestClient(std::move(impl));
  }
  std::string why;
  auto url = parse_url(o.url, why);
  if (!url) return make_error(RestError::invalid_argument, why + " (see " + o.address_hint + ")");
  impl->url = *url;
  impl->endpoint = o.url;
  while (!impl->endpoint.empty() && impl->endpoint.back() == '/') impl->endpoint.pop_back();
  if (!url->tls) return RestClient(std::move(impl));

  impl->tls.emplace(ssl::context::tls_client);
  SSL_CTX* ctx = impl->tls->native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Responses carry Content-Length; a server closing without close_notify is not an error.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (o.insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!o.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
        return make_error(RestError::invalid_argument,
                          "cannot load CA certificates from " + o.ca_file + ": " + openssl_error() + " (see --ca)");
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return make_error(RestError::tls_failed, "cannot load the system CA store: " + openssl_error() + " (see --ca)");
    }
  }
  if (o.client_cert.empty() != o.client_key.empty()) {
    return make_error(RestError::invalid_argument, "a client certificate needs both --cert and --key");
  }
  if (!o.client_cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.client_cert.c_str()) != 1) {
      return make_error(RestError::invalid_argument,
                        "cannot load client certificate " + o.client_cert + ": " + openssl_error());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o.client_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      return make_error(RestError::invalid_argument, "cannot load client key " + o.client_key +
                                                         " (or it does not match the certificate): " + openssl_error());
    }
  }
  return RestClient(std::move(impl));
}

Result<RestResponse, RestError> RestClient::request(std::string_view method, std::string_view path,
                                                    std::string_view body) {
  Impl& d = *impl_;
  const std::string text = d.request_text(method, path, body);
  net::io_context ioc;
  error_code ec;

  if (!d.options.unix_socket.empty()) {
    beast::basic_stream<unix_proto> stream(ioc);
    stream.expires_after(d.options.timeout);
    stream.async_connect(unix_proto::endpoint(d.options.unix_socket), [&](const error_code& e) { ec = e; });
    ioc.run();
    if (ec) return make_error(RestError::connect_failed, d.connect_advice(ec));
    ioc.restart();
    return Exchange<beast::basic_stream<unix_proto>>(d, stream).run(ioc, text);
  }

  tcp::resolver resolver(ioc);
  const auto found = resolver.resolve(d.url.host, d.url.port, ec);
  if (ec) {
    return make_error(RestError::connect_failed,
                      "cannot resolve '" + d.url.host + "' (" + ec.message() + "); check " + d.options.address_hint);
  }
  beast::tcp_stream tcp_stream(ioc);
  tcp_stream.expires_after(d.options.timeout);
  tcp_stream.async_connect(found, [&](const error_code& e, const tcp::endpoint&) { ec = e; });
  ioc.run();
  if (ec) {
    return make_error(ec == beast::error::timeout ? RestError::timeout : RestError::connect_failed,
                      d.connect_advice(ec));
  }
  tcp_stream.socket().set_option(tcp::no_delay(true), ec);
  ioc.restart();
  if (!d.tls) return Exchange<beast::tcp_stream>(d, tcp_stream).run(ioc, text);

  beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), *d.tls);
  SSL* ssl_handle = stream.native_handle();
  const bool ip = is_ip_literal(d.url.host);
  // SSL_set_tlsext_host_name() is a macro with a C cast; this is what it expands to.
  if (!ip) SSL_ctrl(ssl_handle, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, d.url.host.data());
  if (!d.options.insecure) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
    const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, d.url.host.c_str())
                      : X509_VERIFY_PARAM_set1_host(param, d.url.host.c_str(), 0);
    if (ok != 1) return make_error(RestError::tls_failed, "cannot set the expected host name: " + openssl_error());
  }
  ERR_clear_error();
  beast::get_lowest_layer(stream).expires_after(d.options.timeout);
  stream.async_handshake(ssl::stream_base::client, [&](const error_code& e) { ec = e; });
  ioc.run();
  if (ec) {
    const std::string message = "TLS handshake with " + d.endpoint + " failed: ";
    const long verify = SSL_get_verify_result(ssl_handle);
    if (ec == beast::error::timeout) {
      return make_error(RestError::timeout,
                        message + "no answer within " + std::to_string(d.options.timeout.count()) + " ms");
    }
    if (verify != X509_V_OK) {
      return make_error(RestError::tls_failed,
                        message + "certificate verification failed (" + X509_verify_cert_error_string(verify) +
                            "); pass the server's CA with --ca, or --insecure to skip verification");
    }
    std::string detail = ec.message();
    if (detail.find("wrong version number") != std::string::npos || detail.find("packet length") != std::string::npos) {
      detail += " (is the server speaking plain HTTP? try http://)";
    }
    return make_error(RestError::tls_failed, message + detail);
  }
  ioc.restart();
  return Exchange<beast::ssl_stream<beast::tcp_stream>>(d, stream).run(ioc, text);
}

}  // namespace axon::client
