// HTTP/1.1 over TLS (OpenSSL 3), TCP or a unix socket for the REST API client. One request
// per connection ("Connection: close") keeps the state machine trivial; axonctl sends one
// request per run.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

#include "axon/client/rest.h"

namespace axon::client {

namespace {

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

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
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

enum class Parse { complete, incomplete, bad };

// Parses `raw` into `out`. With at_eof, a body without Content-Length ends here.
Parse parse_response(std::string_view raw, bool at_eof, RestResponse& out, std::string& why) {
  std::size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (raw.size() > 64 * 1024) {
      why = "response headers larger than 64 KiB";
      return Parse::bad;
    }
    if (at_eof) why = raw.empty() ? "the server closed the connection without a response" : "truncated headers";
    return at_eof ? Parse::bad : Parse::incomplete;
  }
  std::string_view head = raw.substr(0, head_end);
  std::size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.substr(0, 7) != "HTTP/1." || status_line.size() < 12 || status_line[8] != ' ') {
    why = "not an HTTP/1.x response (is the URL scheme right? https:// for the TCP API)";
    return Parse::bad;
  }
  int status = 0;
  auto [ptr, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
  if (ec != std::errc() || ptr != status_line.data() + 12 || status < 100 || status > 599) {
    why = "bad HTTP status line";
    return Parse::bad;
  }
  out = RestResponse{};
  out.status = status;
  out.reason = status_line.size() > 13 ? trim(status_line.substr(13)) : std::string();
  std::optional<std::size_t> content_length;
  bool chunked = false;
  std::size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    std::size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      why = "malformed header line";
      return Parse::bad;
    }
    std::string name(line.substr(0, colon));
    std::string value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      std::size_t n = 0;
      auto [p, e] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (e != std::errc() || p != value.data() + value.size()) {
        why = "bad Content-Length";
        return Parse::bad;
      }
      content_length = n;
    } else if (iequals(name, "transfer-encoding") && lower(value).find("chunked") != std::string::npos) {
      chunked = true;
    }
    out.headers.emplace_back(std::move(name), std::move(value));
  }
  std::string_view body = raw.substr(head_end + 4);
  if (chunked) {
    std::string decoded;
    std::size_t at = 0;
    for (;;) {
      std::size_t eol = body.find("\r\n", at);
      if (eol == std::string_view::npos) break;
      std::size_t size = 0;
      std::string_view size_text = body.substr(at, eol - at);
      size_text = size_text.substr(0, size_text.find(';'));
      auto [p, e] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
      if (e != std::errc() || size_text.empty()) {
        why = "bad chunk size";
        return Parse::bad;
      }
      if (size == 0) {
        out.body = std::move(decoded);
        return Parse::complete;  // trailers, if any, are ignored
      }
      if (eol + 2 + size + 2 > body.size()) break;
      decoded.append(body.substr(eol + 2, size));
      at = eol + 2 + size + 2;
    }
    if (at_eof) why = "truncated chunked body";
    return at_eof ? Parse::bad : Parse::incomplete;
  }
  if (content_length) {
    if (body.size() < *content_length) {
      if (at_eof)
        why = "truncated body (" + std::to_string(body.size()) + " of " + std::to_string(*content_length) + " bytes)";
      return at_eof ? Parse::bad : Parse::incomplete;
    }
    out.body = std::string(body.substr(0, *content_length));
    return Parse::complete;
  }
  if (status == 204 || status == 304 || status < 200) return Parse::complete;
  if (!at_eof) return Parse::incomplete;
  out.body = std::string(body);
  return Parse::complete;
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

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

void set_io_timeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = time_t(timeout.count() / 1000);
  tv.tv_usec = suseconds_t((timeout.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Non-blocking connect bounded by `timeout`; returns 0 or an errno value.
int connect_with_timeout(int fd, const sockaddr* addr, socklen_t len, std::chrono::milliseconds timeout) {
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, addr, len);
  int err = rc == 0 ? 0 : errno;
  if (rc != 0 && err == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int n;
    do {
      n = ::poll(&p, 1, int(timeout.count()));
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      err = ETIMEDOUT;
    } else {
      socklen_t sl = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl);
    }
  }
  fcntl(fd, F_SETFL, flags);
  return err;
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

}  // namespace

struct RestClient::Impl {
  RestOptions options;
  Url url;
  std::string endpoint;
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx;

  Result<Fd, RestError> connect_socket();
  std::string connect_advice(int err) const;
};

std::string RestClient::Impl::connect_advice(int err) const {
  std::string message = "cannot connect to " + endpoint + ": " + std::strerror(err);
  if (err == ECONNREFUSED || err == ENOENT || err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH) {
    message += "; is axon-controlplane running? (see " +
               (options.unix_socket.empty() ? options.address_hint : options.unix_hint) + ")";
  } else if (err == EACCES || err == EPERM) {
    message += "; the unix socket is for root only: run as root or use the HTTPS API (" + options.address_hint + ")";
  }
  return message;
}

Result<Fd, RestError> RestClient::Impl::connect_socket() {
  if (!options.unix_socket.empty()) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (options.unix_socket.size() >= sizeof addr.sun_path) {
      return make_error(RestError::invalid_argument, "unix socket path too long: " + options.unix_socket);
    }
    std::memcpy(addr.sun_path, options.unix_socket.c_str(), options.unix_socket.size() + 1);
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) return make_error(RestError::connect_failed, connect_advice(errno));
    int err = connect_with_timeout(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr, options.timeout);
    if (err != 0) return make_error(RestError::connect_failed, connect_advice(err));
    set_io_timeouts(fd.get(), options.timeout);
    return fd;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int gai = getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &found);
  if (gai != 0) {
    return make_error(RestError::connect_failed,
                      "cannot resolve '" + url.host + "' (" + gai_strerror(gai) + "); check " + options.address_hint);
  }
  int last_err = ECONNREFUSED;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last_err = errno;
      continue;
    }
    int err = connect_with_timeout(fd.get(), ai->ai_addr, ai->ai_addrlen, options.timeout);
    if (err != 0) {
      last_err = err;
      continue;
    }
    freeaddrinfo(found);
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_io_timeouts(fd.get(), options.timeout);
    return fd;
  }
  freeaddrinfo(found);
  if (last_err == ETIMEDOUT) {
    return make_error(RestError::timeout, connect_advice(last_err));
  }
  return make_error(RestError::connect_failed, connect_advice(last_err));
}

std::string RestResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return v;
  }
  return {};
}

Result<RestResponse, RestError> parse_http_response(std::string_view raw) {
  RestResponse out;
  std::string why;
  switch (parse_response(raw, true, out, why)) {
    case Parse::complete: return out;
    case Parse::incomplete:
    case Parse::bad: break;
  }
  return make_error(RestError::bad_response, why);
}

RestClient::RestClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RestClient::RestClient(RestClient&&) noexcept = default;
RestClient& RestClient::operator=(RestClient&&) noexcept = default;
RestClient::~RestClient() = default;

const std::string& RestClient::endpoint() const {
  return impl_->endpoint;
}

bool RestClient::insecure() const {
  return impl_->ctx != nullptr && impl_->options.insecure;
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

  impl->ctx.reset(SSL_CTX_new(TLS_client_method()));
  if (!impl->ctx) return make_error(RestError::tls_failed, "cannot create a TLS context: " + openssl_error());
  SSL_CTX* ctx = impl->ctx.get();
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
  auto connected = d.connect_socket();
  if (!connected) return connected.error();
  Fd fd = std::move(connected).value();

  std::unique_ptr<SSL, SslDeleter> ssl;
  if (d.ctx) {
    ssl.reset(SSL_new(d.ctx.get()));
    if (!ssl) return make_error(RestError::tls_failed, "cannot create a TLS session: " + openssl_error());
    SSL_set_fd(ssl.get(), fd.get());
    const bool ip = is_ip_literal(d.url.host);
    // SSL_set_tlsext_host_name() is a macro with a C cast; this is what it expands to.
    if (!ip) {
      SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, d.url.host.data());
    }
    if (!d.options.insecure) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
      int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, d.url.host.c_str())
                  : X509_VERIFY_PARAM_set1_host(param, d.url.host.c_str(), 0);
      if (ok != 1) return make_error(RestError::tls_failed, "cannot set the expected host name: " + openssl_error());
    }
    ERR_clear_error();
    errno = 0;
    if (SSL_connect(ssl.get()) != 1) {
      long verify = SSL_get_verify_result(ssl.get());
      std::string message = "TLS handshake with " + d.endpoint + " failed: ";
      if (verify != X509_V_OK) {
        message += std::string("certificate verification failed (") + X509_verify_cert_error_string(verify) +
                   "); pass the server's CA with --ca, or --insecure to skip verification";
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return make_error(RestError::timeout,
                          message + "no answer within " + std::to_string(d.options.timeout.count()) + " ms");
      } else {
        std::string detail = openssl_error();
        if (detail == "unknown TLS error" && errno != 0) detail = std::strerror(errno);
        message += detail;
        if (detail.find("wrong version number") != std::string::npos ||
            detail.find("packet length") != std::string::npos) {
          message += " (is the server speaking plain HTTP? try http://)";
        }
      }
      return make_error(RestError::tls_failed, message);
    }
  }

  std::string request;
  request.reserve(256 + body.size());
  request.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  request.append("Host: ").append(d.url.host.find(':') != std::string::npos ? "[" + d.url.host + "]" : d.url.host);
  if (d.options.unix_socket.empty()) request.append(":").append(d.url.port);
  request.append("\r\nUser-Agent: axonctl\r\nAccept: application/json\r\nConnection: close\r\n");
  if (!d.options.token.empty()) request.append("Authorization: Bearer ").append(d.options.token).append("\r\n");
  if (!body.empty() || method == "POST" || method == "PUT") {
    if (!body.empty()) request.append("Content-Type: application/json\r\n");
    request.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  request.append("\r\n").append(body);

  auto io_error = [&](const char* what, int err) -> Error<RestError> {
    if (err == EAGAIN || err == EWOULDBLOCK) {
      return make_error(RestError::timeout, std::string("no response from ") + d.endpoint + " within " +
                                                std::to_string(d.options.timeout.count()) + " ms");
    }
    std::string detail = ssl ? openssl_error() : std::string();
    if (detail.empty() || detail == "unknown TLS error") detail = err != 0 ? std::strerror(err) : "connection closed";
    return make_error(RestError::io_error, std::string(what) + " " + d.endpoint + " failed: " + detail);
  };

  std::size_t sent = 0;
  while (sent < request.size()) {
    errno = 0;
    ssize_t n;
    if (ssl) {
      int w = SSL_write(ssl.get(), request.data() + sent, int(request.size() - sent));
      n = w > 0 ? w : -1;
    } else {
      n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("sending to", errno);
    }
    sent += std::size_t(n);
  }

  std::string raw;
  RestResponse response;
  std::string why;
  char buffer[16384];
  for (;;) {
    errno = 0;
    ssize_t n;
    if (ssl) {
      int r = SSL_read(ssl.get(), buffer, int(sizeof buffer));
      if (r > 0) {
        n = r;
      } else {
        int e = SSL_get_error(ssl.get(), r);
        n = (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) ? 0 : -1;
      }
    } else {
      n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("reading from", errno);
    }
    raw.append(buffer, std::size_t(n));
    if (raw.size() > d.options.max_response_bytes) {
      return make_error(RestError::bad_response, "response from " + d.endpoint + " larger than " +
                                                     std::to_string(d.options.max_response_bytes) + " bytes");
    }
    Parse state = parse_response(raw, n == 0, response, why);
    if (state == Parse::complete) return response;
    if (state == Parse::bad) return make_error(RestError::bad_response, "bad response from " + d.endpoint + ": " + why);
    if (n == 0) return make_error(RestError::bad_response, "bad response from " + d.endpoint + ": " + why);
  }
}

}  // namespace axon::client
