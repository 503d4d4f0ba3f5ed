// Boost.Beast transport of the REST API (see transport.h).
//
// One session per connection, on its own strand. The session reads the request head itself
// (up to kMaxHeaderBytes, under one deadline for the whole head, so a client that trickles
// bytes cannot hold it open), refuses obsolete line folding, then lets Beast's parser parse
// the head: it rejects malformed request lines, bad header fields, invalid Content-Length,
// and Content-Length together with Transfer-Encoding. The body of an admitted request is
// read by Beast under a body limit and its own deadline. Requests on a connection are
// answered in order, so pipelined requests are served one after the other.
#include "api/transport.h"

#include <sys/socket.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <limits>
#include <optional>
#include <thread>
#include <vector>

#include "axon/common/log.h"

#include "api/handlers/respond.h"

namespace axon::controlplane::api {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using unix_proto = net::local::stream_protocol;
using error_code = boost::system::error_code;

constexpr const char* kLog = "api";
constexpr auto kLingerTime = std::chrono::milliseconds(200);
constexpr std::size_t kLingerBytes = 256u << 10;

using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using UnixStream = beast::basic_stream<unix_proto>;

}  // namespace

struct Transport::Impl {
  Impl(const ApiServerOptions& o, Pipeline& p) : options(o), pipeline(p) {}

  const ApiServerOptions& options;
  Pipeline& pipeline;
  std::optional<net::io_context> ioc;
  std::optional<ssl::context> tls;
  std::optional<tcp::acceptor> tcp_acceptor;
  std::optional<unix_proto::acceptor> unix_acceptor;
  std::vector<std::thread> threads;
  std::atomic<std::uint32_t> open_connections{0};
  bool stopped = false;

  std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(options.read_timeout_ms); }
  // Counts a connection in; false (and counted as refused) when the cap is reached.
  bool admit_connection() {
    std::uint32_t n = open_connections.load();
    do {
      if (n >= options.max_connections) {
        pipeline.stats().count_connection(false);
        return false;
      }
    } while (!open_connections.compare_exchange_weak(n, n + 1));
    pipeline.stats().count_connection(true);
    return true;
  }
  void accept_tcp();
  void accept_unix();
  void retry_accept_later(void (Impl::*again)());
};

namespace {

// The response as Beast writes it.
bhttp::response<bhttp::string_body> to_beast(const http::Response& r, bool keep_alive) {
  bhttp::response<bhttp::string_body> out;
  out.version(11);
  out.result(static_cast<unsigned>(r.status));
  if (r.status != 204) {
    out.set(bhttp::field::content_type, r.content_type);
    out.body() = r.body;
    out.content_length(r.body.size());
  }
  out.set(bhttp::field::cache_control, "no-store");
  for (const auto& [name, value] : r.headers) out.insert(name, value);
  if (!keep_alive) out.set(bhttp::field::connection, "close");
  return out;
}

// A head Beast could not parse: the status and a message that says what was wrong.
http::Response parse_refusal(const error_code& ec) {
  using handlers::error_response;
  if (ec == bhttp::error::bad_transfer_encoding) {
    return error_response(400,
                          "ambiguous framing: Transfer-Encoding with Content-Length (or repeated); send Content-Length "
                          "only");
  }
  if (ec == bhttp::error::bad_content_length) return error_response(400, "invalid or conflicting Content-Length");
  if (ec == bhttp::error::header_limit) {
    return error_response(431, "request header block exceeds " + std::to_string(http::kMaxHeaderBytes) + " bytes");
  }
  if (ec == bhttp::error::body_limit) return error_response(413, "request body exceeds the limit");
  if (ec == bhttp::error::bad_method) return error_response(400, "invalid character in method");
  if (ec == bhttp::error::bad_version) {
    return error_response(400, "malformed request line; expected \"METHOD /path HTTP/1.1\"");
  }
  return error_response(400, "malformed request head: " + ec.message());
}

template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

 public:
  Session(Transport::Impl& t, Stream stream, Peer peer) : t_(t), stream_(std::move(stream)), peer_(std::move(peer)) {}
  ~Session() { t_.open_connections.fetch_sub(1); }

  void start() {
    if constexpr (kTls) {
      lowest().expires_after(t_.timeout());
      stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](const error_code& ec) {
        if (ec) {
          AXON_LOG_DEBUG(kLog, "TLS handshake with %s failed: %s", self->peer_.remote.c_str(), ec.message().c_str());
          self->t_.pipeline.stats().count_tls_handshake_failure();
          return;
        }
        self->next_request();
      });
    } else {
      next_request();
    }
  }

 private:
  auto& lowest() { return beast::get_lowest_layer(stream_); }

  // The idle wait before a request and its whole head share one deadline.
  void next_request() {
    deadline_ = std::chrono::steady_clock::now() + t_.timeout();
    read_head();
  }

  void read_head() {
    // Tolerate blank lines before a request line (RFC 9112 2.2).
    for (;;) {
      const auto data = buffer_.data();
      if (data.size() >= 2 && static_cast<const char*>(data.data())[0] == '\r' &&
          static_cast<const char*>(data.data())[1] == '\n') {
        buffer_.consume(2);
        continue;
      }
      break;
    }
    const std::string_view seen(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    const auto end = seen.find("\r\n\r\n");
    if (end != std::string_view::npos && end + 4 <= http::kMaxHeaderBytes) return parse_head(seen.substr(0, end + 4));
    if (end != std::string_view::npos || seen.size() > http::kMaxHeaderBytes) {
      return refuse_unparsed(parse_refusal(bhttp::error::header_limit));
    }
    lowest().expires_at(deadline_);
    stream_.async_read_some(buffer_.prepare(8192),
                            [self = this->shared_from_this()](const error_code& ec, std::size_t n) {
                              if (ec) return;  // closed, reset or the head's deadline passed: nothing to answer
                              self->buffer_.commit(n);
                              self->read_head();
                            });
  }

  void parse_head(std::string_view head) {
    if (head.find("\r\n ") != std::string_view::npos || head.find("\r\n\t") != std::string_view::npos) {
      return refuse_unparsed(handlers::error_response(400, "obsolete header line folding is not accepted"));
    }
    // Beast knows only HTTP/1.x; another well-formed version gets its own status.
    const auto line = head.substr(0, head.find("\r\n"));
    if (const auto sp = line.rfind(' '); sp != std::string_view::npos) {
      const auto v = line.substr(sp + 1);
      if (v.size() == 8 && v.substr(0, 5) == "HTTP/" && v[6] == '.' && v != "HTTP/1.0" && v != "HTTP/1.1") {
        return refuse_unparsed(handlers::error_response(505, "only HTTP/1.0 and HTTP/1.1 are supported"));
      }
    }
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(http::kMaxHeaderBytes));
    // The body's size is judged in frame(), from Content-Length, with a clearer answer.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    error_code ec;
    const std::size_t used = parser_->put(net::buffer(head.data(), head.size()), ec);
    buffer_.consume(used);
    if (ec || !parser_->is_header_done()) {
      return refuse_unparsed(parse_refusal(ec ? ec : bhttp::error::partial_message));
    }
    const auto& req = parser_->get();
    if (req.version() != 11 && req.version() != 10) {
      return refuse_unparsed(handlers::error_response(505, "only HTTP/1.0 and HTTP/1.1 are supported"));
    }
    x_ = Exchange{};
    x_.peer = &peer_;
    x_.request.method = std::string(req.method_string());
    const std::string target(req.target());
    if (target.empty() || target.front() != '/') {
      return refuse_unparsed(handlers::error_response(400, "request target must be an absolute path"));
    }
    for (const char c : target) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f) {
        return refuse_unparsed(
            handlers::error_response(400, "request target contains a control or non-ASCII character"));
      }
    }
    const auto qmark = target.find('?');
    x_.request.path = target.substr(0, qmark);
    if (qmark != std::string::npos) x_.request.query = target.substr(qmark + 1);
    if (const auto it = req.find(bhttp::field::authorization); it != req.end()) {
      x_.request.authorization = std::string(it->value());
    }
    if (const auto it = req.find(bhttp::field::if_match); it != req.end()) {
      x_.request.if_match = std::string(it->value());
    }
    keep_alive_ = req.keep_alive();
    frame();
  }

  // Framing checks that need the parsed head, before any routing.
  void frame() {
    const auto& req = parser_->get();
    if (req.find(bhttp::field::transfer_encoding) != req.end()) {
      x_.refused_before_routing = true;
      x_.response = handlers::error_response(
          501, "Transfer-Encoding (e.g. chunked) is not supported; send the body with Content-Length");
      return respond(false);
    }
    x_.request.content_length = static_cast<std::size_t>(parser_->content_length().value_or(0));
    if (x_.request.content_length > t_.options.max_body_bytes) {
      x_.refused_before_routing = true;
      x_.response =
          handlers::error_response(413, "request body of " + std::to_string(x_.request.content_length) +
                                            " bytes exceeds the limit of " + std::to_string(t_.options.max_body_bytes));
      return respond(false);
    }
    // Until it is read, a pending body forbids keeping the connection.
    if (!t_.pipeline.admit(x_)) return respond(keep_alive_ && x_.request.content_length == 0);
    if (x_.request.content_length == 0) return run_handler();
    const auto& expect = req[bhttp::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      lowest().expires_after(t_.timeout());
      net::async_write(stream_, net::buffer(kContinue),
                       [self = this->shared_from_this()](const error_code& ec, std::size_t) {
                         if (!ec) self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    lowest().expires_after(t_.timeout());
    bhttp::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](const error_code& ec, std::size_t) {
      if (ec) {
        // Timed out or gone: the socket is closed, there is nobody to answer. Count it.
        self->x_.response = handlers::error_response(408, "timed out or disconnected while reading the request body");
        self->t_.pipeline.finish(self->x_);
        return;
      }
      self->x_.request.body = std::move(self->parser_->get().body());
      self->run_handler();
    });
  }

  void run_handler() {
    t_.pipeline.handle(x_);
    respond(keep_alive_);
  }

  void refuse_unparsed(http::Response response) {
    x_ = Exchange{};
    x_.peer = &peer_;
    x_.request.method = "-";
    x_.request.path = "-";
    x_.refused_before_routing = true;
    x_.response = std::move(response);
    respond(false);
  }

  void respond(bool keep_alive) {
    // Audit and count before the first byte goes out: a client that has read the answer can
    // rely on its audit line being in the log (after the write, it raced the client's read).
    t_.pipeline.finish(x_);
    response_ = to_beast(x_.response, keep_alive);
    lowest().expires_after(t_.timeout());
    bhttp::async_write(stream_, response_,
                       [self = this->shared_from_this(), keep_alive](const error_code& ec, std::size_t) {
                         if (ec) return;
                         if (keep_alive) return self->next_request();
                         self->close();
                       });
  }

  // Closing a socket with unread input makes the kernel send RST, which can destroy a final
  // response (413, 401) the client has not read yet. So: end TLS, stop sending, then
  // swallow what the peer still sends, briefly and bounded, until it closes.
  void close() {
    if constexpr (kTls) {
      lowest().expires_after(kLingerTime);
      stream_.async_shutdown([self = this->shared_from_this()](const error_code&) { self->linger(); });
    } else {
      linger();
    }
  }

  void linger() {
    error_code ignored;
    lowest().socket().shutdown(net::socket_base::shutdown_send, ignored);
    lowest().expires_after(kLingerTime);
    drain();
  }

  void drain() {
    lowest().async_read_some(net::buffer(sink_),
                             [self = this->shared_from_this()](const error_code& ec, std::size_t n) {
                               self->drained_ += n;
                               if (!ec && self->drained_ < kLingerBytes) self->drain();
                             });
  }

  Transport::Impl& t_;
  Stream stream_;
  Peer peer_;
  beast::flat_buffer buffer_{http::kMaxHeaderBytes + 8192};
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
  Exchange x_;
  bool keep_alive_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::array<char, 4096> sink_{};
  std::size_t drained_ = 0;
};

std::string remote_of(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  const std::string host = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
  return host + ":" + std::to_string(ep.port());
}

}  // namespace

void Transport::Impl::retry_accept_later(void (Impl::*again)()) {
  // Out of descriptors: back off instead of spinning on a pending connection.
  auto timer = std::make_shared<net::steady_timer>(*ioc, std::chrono::milliseconds(100));
  timer->async_wait([this, timer, again](const error_code& ec) {
    if (!ec) (this->*again)();
  });
}

void Transport::Impl::accept_tcp() {
  tcp_acceptor->async_accept(net::make_strand(*ioc), [this](const error_code& ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (ec) {
      if (ec == boost::system::errc::too_many_files_open || ec == boost::system::errc::too_many_files_open_in_system) {
        return retry_accept_later(&Impl::accept_tcp);
      }
      return accept_tcp();
    }
    if (admit_connection()) {
      Peer peer;
      error_code ep_ec;
      const auto ep = socket.remote_endpoint(ep_ec);
      peer.remote = ep_ec ? "?" : remote_of(ep);
      auto session =
          std::make_shared<Session<TlsStream>>(*this, TlsStream(beast::tcp_stream(std::move(socket)), *tls), peer);
      session->start();
    }
    accept_tcp();
  });
}

void Transport::Impl::accept_unix() {
  unix_acceptor->async_accept(net::make_strand(*ioc), [this](const error_code& ec, unix_proto::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (ec) {
      if (ec == boost::system::errc::too_many_files_open || ec == boost::system::errc::too_many_files_open_in_system) {
        return retry_accept_later(&Impl::accept_unix);
      }
      return accept_unix();
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && admit_connection()) {
      Peer peer;
      peer.is_unix = true;
      peer.uid = cred.uid;
      peer.remote = "unix:uid=" + std::to_string(cred.uid);
      std::make_shared<Session<UnixStream>>(*this, UnixStream(std::move(socket)), peer)->start();
    }
    accept_unix();
  });
}

Transport::Transport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Transport::~Transport() {
  stop();
}

Result<std::unique_ptr<Transport>, ApiServerError> Transport::start(const ApiServerOptions& options, Pipeline& pipeline,
                                                                    SSL_CTX* tls, int tcp_fd, int unix_fd) {
  auto impl = std::make_unique<Impl>(options, pipeline);
  Impl& s = *impl;
  s.ioc.emplace(static_cast<int>(options.threads));
  error_code ec;
  if (tcp_fd >= 0) {
    SSL_CTX_up_ref(tls);  // asio's context takes a reference of its own
    s.tls.emplace(tls);
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(tcp_fd, reinterpret_cast<sockaddr*>(&addr), &len);
    s.tcp_acceptor.emplace(*s.ioc);
    s.tcp_acceptor->assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), tcp_fd, ec);
    if (ec) return make_error(ApiServerError::bind_failed, "cannot serve the TCP listener: " + ec.message());
  }
  if (unix_fd >= 0) {
    s.unix_acceptor.emplace(*s.ioc);
    s.unix_acceptor->assign(unix_proto(), unix_fd, ec);
    if (ec) return make_error(ApiServerError::bind_failed, "cannot serve the unix socket: " + ec.message());
  }
  if (s.tcp_acceptor) s.accept_tcp();
  if (s.unix_acceptor) s.accept_unix();
  for (std::uint32_t i = 0; i < options.threads; ++i) {
    s.threads.emplace_back([&s] {
      for (;;) {
        try {
          s.ioc->run();
          return;
        } catch (const std::exception& e) {
          // A handler must not take the API down; log and keep serving.
          AXON_LOG_ERROR(kLog, "API thread: %s", e.what());
        }
      }
    });
  }
  return std::unique_ptr<Transport>(new Transport(std::move(impl)));
}

void Transport::stop() {
  Impl& s = *impl_;
  if (s.stopped) return;
  s.stopped = true;
  if (s.ioc) s.ioc->stop();
  for (auto& th : s.threads) {
    if (th.joinable()) th.join();
  }
  // Nothing runs now: drop the listeners, then the io_context, which destroys every pending
  // session and so closes its connection.
  s.tcp_acceptor.reset();
  s.unix_acceptor.reset();
  s.ioc.reset();
  s.tls.reset();
}

}  // namespace axon::controlplane::api
