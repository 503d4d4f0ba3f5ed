// ApiServer: listeners, the connection worker pool, TLS, auth, rate limits, audit and the
// router that maps /v1 onto ControlApi.
//
// Threading is deliberately plain: one acceptor thread polls the listeners and queues
// connections; `threads` workers each own one connection at a time with blocking I/O and
// socket timeouts. A control plane sees a handful of requests per second, so clarity and
// bounded resource use matter more than throughput.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "axon/common/log.h"
#include "axon/controlplane/api_server.h"

#include "api/http.h"
#include "api/json.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "api";

using json = nlohmann::json;
using http::Response;

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error queued" : out;
}

Response json_response(int status, json body) {
  Response r;
  r.status = status;
  // replace: a message quoting a path with invalid UTF-8 must not make the dump throw.
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  return r;
}

Response error_response(int status, const std::string& message) {
  return json_response(status, json{{"error", message}});
}

// The one place an ApiErrorCode becomes an HTTP status.
int status_of(ApiErrorCode code) {
  switch (code) {
    case ApiErrorCode::invalid_argument: return 400;
    case ApiErrorCode::not_found: return 404;
    case ApiErrorCode::conflict: return 409;
    case ApiErrorCode::unavailable: return 503;
    case ApiErrorCode::internal: return 500;
  }
  return 500;
}

Response error_response(const ApiError& error) {
  return error_response(status_of(error.code), error.message);
}

bool is_mutating(const std::string& method) {
  return method != "GET" && method != "HEAD";
}

std::string utc_now_iso8601() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

// --- routing -----------------------------------------------------------------------------

struct Call {
  std::map<std::string, std::string> params;  // from {name} segments, percent-decoded
  std::map<std::string, std::string> query;
  std::string body;
};

using Handler = std::function<Response(ControlApi&, const Call&)>;

struct RouteDef {
  std::string method;
  std::string path;  // OpenAPI template
  std::vector<std::string> query_params;
  Handler handler;
};

ApiResult<json> body_json(const Call& call) {
  return json_io::parse_body(call.body);
}

ApiResult<std::uint32_t> tenant_id_param(const Call& call) {
  const std::string& s = call.params.at("id");
  std::uint64_t v = 0;
  bool ok = !s.empty() && s.size() <= 10;
  for (const char c : s) {
    if (c < '0' || c > '9') ok = false;
    if (ok) v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (!ok || v == 0 || v > 0xffffffffULL) {
    return api_error(ApiErrorCode::invalid_argument, "tenant id '" + s + "' must be an integer from 1 to 4294967295");
  }
  return static_cast<std::uint32_t>(v);
}

template <typename T>
json list_of(const char* key, const std::vector<T>& items) {
  json arr = json::array();
  for (const auto& item : items) arr.push_back(json_io::to_json(item));
  return json{{key, std::move(arr)}};
}

// The call's value as JSON with `status`, or its error with the error's status.
template <typename T>
Response reply(int status, const ApiResult<T>& result) {
  if (!result) return error_response(result.error());
  return json_response(status, json_io::to_json(result.value()));
}

template <typename T>
Response reply_list(const char* key, const ApiResult<std::vector<T>>& result) {
  if (!result) return error_response(result.error());
  return json_response(200, list_of(key, result.value()));
}

Response reply_no_content(const ApiResult<Ok>& result) {
  if (!result) return error_response(result.error());
  Response r;
  r.status = 204;
  return r;
}

// An empty body or "{}": for actions that take no parameters today.
ApiResult<Ok> expect_no_parameters(const Call& call, const char* what) {
  if (call.body.find_first_not_of(" \t\r\n") == std::string::npos) return Ok{};
  const auto j = body_json(call);
  if (!j) return j.error();
  if (!j->is_object()) {
    return api_error(ApiErrorCode::invalid_argument, std::string(what) + " body must be a JSON object");
  }
  if (!j->empty()) {
    return api_error(ApiErrorCode::invalid_argument, "unknown field '" + j->begin().key() + "' in " + what);
  }
  return Ok{};
}

const std::vector<RouteDef>& route_table() {
  static const std::vector<RouteDef> table = [] {
    std::vector<RouteDef> t;
    auto add = [&t](const char* method, const char* path, Handler h, std::vector<std::string> query = {}) {
      t.push_back(RouteDef{method, path, std::move(query), std::move(h)});
    };
    add("GET", "/v1/health", [](ControlApi&, const Call&) { return json_response(200, json{{"status", "ok"}}); });
    add("GET", "/v1/status", [](ControlApi& api, const Call&) { return reply(200, api.status()); });

    add("GET", "/v1/agents", [](ControlApi& api, const Call&) { return reply_list("agents", api.list_agents()); });
    add("POST", "/v1/agents", [](ControlApi& api, const Call& call) {
      const auto body = body_json(call);
      if (!body) return error_response(body.error());
      const auto spec = json_io::agent_spec_from_json(body.value());
      if (!spec) return error_response(spec.error());
      Response r = reply(201, api.create_agent(spec.value()));
      if (r.status == 201) r.headers.emplace_back("Location", "/v1/agents/" + spec->name);
      return r;
    });
    add("GET", "/v1/agents/{name}",
        [](ControlApi& api, const Call& call) { return reply(200, api.get_agent(call.params.at("name"))); });
    add("PUT", "/v1/agents/{name}", [](ControlApi& api, const Call& call) {
      const std::string& name = call.params.at("name");
      const auto body = body_json(call);
      if (!body) return error_response(body.error());
      const auto spec = json_io::agent_spec_from_json(body.value(), name);
      if (!spec) return error_response(spec.error());
      return reply(200, api.replace_agent(name, spec.value()));
    });
    add("DELETE", "/v1/agents/{name}",
        [](ControlApi& api, const Call& call) { return reply_no_content(api.delete_agent(call.params.at("name"))); });
    add("POST", "/v1/agents/{name}/scale", [](ControlApi& api, const Call& call) {
      const auto body = body_json(call);
      if (!body) return error_response(body.error());
      const auto request = json_io::scale_request_from_json(body.value());
      if (!request) return error_response(request.error());
      return reply(200, api.scale_agent(call.params.at("name"), request.value()));
    });
    add("POST", "/v1/agents/{name}/breaker/reset", [](ControlApi& api, const Call& call) {
      if (const auto none = expect_no_parameters(call, "breaker reset"); !none) return error_response(none.error());
      return reply(200, api.reset_breaker(call.params.at("name")));
    });

    add("GET", "/v1/workers",
        [](ControlApi& api, const Call& call) {
          std::optional<std::string> agent;
          if (const auto it = call.query.find("agent"); it != call.query.end()) agent = it->second;
          return reply_list("workers", api.list_workers(agent));
        },
        {"agent"});
    add("POST", "/v1/workers/{id}/drain", [](ControlApi& api, const Call& call) {
      if (const auto none = expect_no_parameters(call, "drain"); !none) return error_response(none.error());
      return reply(200, api.drain_worker(call.params.at("id")));
    });
    add("POST", "/v1/workers/{id}/kill", [](ControlApi& api, const Call& call) {
      if (const auto none = expect_no_parameters(call, "kill"); !none) return error_response(none.error());
      return reply(200, api.kill_worker(call.params.at("id")));
    });

    add("GET", "/v1/tenants", [](ControlApi& api, const Call&) { return reply_list("tenants", api.list_tenants()); });
    add("GET", "/v1/tenants/{id}", [](ControlApi& api, const Call& call) {
      const auto id = tenant_id_param(call);
      if (!id) return error_response(id.error());
      return reply(200, api.get_tenant(id.value()));
    });
    add("PUT", "/v1/tenants/{id}", [](ControlApi& api, const Call& call) {
      const auto id = tenant_id_param(call);
      if (!id) return error_response(id.error());
      const auto body = body_json(call);
      if (!body) return error_response(body.error());
      const auto spec = json_io::tenant_spec_from_json(body.value(), id.value());
      if (!spec) return error_response(spec.error());
      return reply(200, api.put_tenant(id.value(), spec.value()));
    });
    add("DELETE", "/v1/tenants/{id}", [](ControlApi& api, const Call& call) {
      const auto id = tenant_id_param(call);
      if (!id) return error_response(id.error());
      return reply_no_content(api.delete_tenant(id.value()));
    });

    add("GET", "/v1/routes", [](ControlApi& api, const Call&) { return reply_list("routes", api.list_routes()); });
    // GET /metrics is answered by the server itself: it appends its own families.
    add("GET", "/metrics", [](ControlApi&, const Call&) { return Response{}; });
    return t;
  }();
  return table;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  std::size_t start = 1;  // paths start with '/'
  while (start <= path.size()) {
    const auto slash = path.find('/', start);
    out.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

// Matches a raw (still percent-encoded) path against a template; fills decoded params.
bool match_template(const std::vector<std::string>& tmpl, const std::vector<std::string>& raw,
                    std::map<std::string, std::string>& params) {
  if (tmpl.size() != raw.size()) return false;
  std::map<std::string, std::string> found;
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    const std::string& t = tmpl[i];
    if (t.size() > 2 && t.front() == '{' && t.back() == '}') {
      std::string value;
      if (raw[i].empty() || !http::percent_decode(raw[i], value, false) || value.find('/') != std::string::npos) {
        return false;
      }
      found[t.substr(1, t.size() - 2)] = std::move(value);
    } else if (t != raw[i]) {
      return false;
    }
  }
  params = std::move(found);
  return true;
}

// --- rate limiting ---------------------------------------------------------------------

class RateLimiter {
 public:
  RateLimiter(double rate, std::uint32_t burst) : rate_(rate), burst_(burst) {}

  // 0 = allowed; otherwise the whole seconds (>= 1) until a request would be allowed.
  std::uint32_t take(const std::string& identity) {
    if (rate_ <= 0) return 0;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    auto [it, inserted] = buckets_.try_emplace(identity, Bucket{static_cast<double>(burst_), now});
    Bucket& b = it->second;
    if (!inserted) {
      const double elapsed = std::chrono::duration<double>(now - b.last).count();
      b.tokens = std::min(static_cast<double>(burst_), b.tokens + elapsed * rate_);
      b.last = now;
    }
    if (b.tokens >= 1.0) {
      b.tokens -= 1.0;
      return 0;
    }
    const double wait = (1.0 - b.tokens) / rate_;
    return static_cast<std::uint32_t>(std::max(1.0, std::ceil(wait)));
  }

 private:
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point last;
  };
  double rate_;
  std::uint32_t burst_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;
};

// --- transports ------------------------------------------------------------------------

class Transport {
 public:
  virtual ~Transport() = default;
  // >0 bytes read; 0 end of stream; <0 error or timeout.
  virtual long read_some(char* buf, std::size_t size) = 0;
  virtual bool write_all(const std::string& data) = 0;
};

class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(int fd) : fd_(fd) {}
  long read_some(char* buf, std::size_t size) override {
    for (;;) {
      const auto n = ::recv(fd_, buf, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }
  bool write_all(const std::string& data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      const auto n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

 private:
  int fd_;
};

class TlsTransport final : public Transport {
 public:
  explicit TlsTransport(SSL* ssl) : ssl_(ssl) {}
  ~TlsTransport() override {
    SSL_shutdown(ssl_);  // best effort close_notify; we do not wait for the peer's
    SSL_free(ssl_);
  }
  long read_some(char* buf, std::size_t size) override {
    std::size_t n = 0;
    if (SSL_read_ex(ssl_, buf, size, &n) == 1) return static_cast<long>(n);
    const int err = SSL_get_error(ssl_, 0);
    ERR_clear_error();
    return err == SSL_ERROR_ZERO_RETURN ? 0 : -1;
  }
  bool write_all(const std::string& data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      std::size_t n = 0;
      if (SSL_write_ex(ssl_, data.data() + done, data.size() - done, &n) != 1) {
        ERR_clear_error();
        return false;
      }
      done += n;
    }
    return true;
  }

 private:
  SSL* ssl_;
};

// Closing a socket with unread input makes the kernel send RST, which can destroy a final
// response (413, 401) the client has not read yet. So: stop sending, then swallow what the
// peer still sends, briefly and bounded, until it closes.
void linger_close_input(int fd) {
  ::shutdown(fd, SHUT_WR);
  timeval tv{};
  tv.tv_usec = 200 * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char sink[4096];
  std::size_t total = 0;
  while (total < (256u << 10)) {
    const auto n = ::recv(fd, sink, sizeof sink, 0);
    if (n <= 0) break;
    total += static_cast<std::size_t>(n);
  }
}

struct Connection {
  int fd = -1;
  bool is_unix = false;
  uid_t uid = 0;  // unix peers only
  std::string remote;
};

}  // namespace

// --- the server ----------------------------------------------------------------------------

struct ApiServer::Impl {
  Impl(const ApiServerOptions& o, ControlApi& a) : options(o), api(a), limiter(o.rate_per_second, o.rate_burst) {}

  ApiServerOptions options;
  ControlApi& api;
  SSL_CTX* tls = nullptr;
  int tcp_fd = -1;
  int unix_fd = -1;
  int wake[2] = {-1, -1};
  std::uint16_t port = 0;
  int audit_fd = -1;
  std::mutex audit_mu;

  std::mutex tokens_mu;
  std::shared_ptr<const TokenStore> tokens = std::make_shared<TokenStore>();
  RateLimiter limiter;

  std::atomic<bool> stopping{false};
  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<Connection> queue;
  std::set<int> active;                // fds being served; shut down on stop()
  std::uint32_t open_connections = 0;  // queued + active, under queue_mu
  std::thread acceptor;
  std::vector<std::thread> workers;

  // Metrics (under stats_mu; a control plane's request rate makes a mutex free).
  std::mutex stats_mu;
  std::map<std::pair<std::string, int>, std::uint64_t> requests;  // (method, status)
  std::map<std::string, std::uint64_t> auth_failures;             // by reason
  std::uint64_t rate_limited = 0;
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;
  std::uint64_t tls_handshake_failures = 0;
  std::uint64_t bad_requests_before_routing = 0;

  Result<Ok, ApiServerError> setup_tls();
  Result<Ok, ApiServerError> setup_tcp();
  Result<Ok, ApiServerError> setup_unix();
  void accept_loop();
  void worker_loop();
  void serve(Connection& conn);
  void serve_http(Transport& t, const Connection& conn);
  // Answers one request; returns whether the connection may stay open.
  bool handle(Transport& t, const Connection& conn, const http::RequestHead& head, std::string& buffered);
  Response dispatch(const Connection& conn, const http::RequestHead& head, std::string& buffered, Transport& t,
                    std::string& identity, bool& body_consumed, bool& fatal);
  void audit(const std::string& identity, const Connection& conn, const std::string& method, const std::string& path,
             int status, const std::string& error);
  void count_auth_failure(const char* reason) {
    std::lock_guard lock(stats_mu);
    ++auth_failures[reason];
  }
  std::string own_metrics();
  void shutdown_all();
};

Result<Ok, ApiServerError> ApiServer::Impl::setup_tls() {
  tls = SSL_CTX_new(TLS_server_method());
  if (!tls) return make_error(ApiServerError::tls_error, "SSL_CTX_new failed: " + openssl_errors());
  // TLS 1.2 and 1.3 only; for 1.2, forward-secret AEAD suites only. 1.3's suites are all
  // AEAD with ephemeral keys already, so OpenSSL's defaults stay.
  SSL_CTX_set_min_proto_version(tls, TLS1_2_VERSION);
  SSL_CTX_set_options(tls, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_cipher_list(tls,
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
    return make_error(ApiServerError::tls_error, "no usable TLS 1.2 cipher suites: " + openssl_errors());
  }
  if (SSL_CTX_use_certificate_chain_file(tls, options.cert_file.c_str()) != 1) {
    return make_error(ApiServerError::tls_error,
                      "cannot load certificate chain " + options.cert_file + " (PEM expected): " + openssl_errors());
  }
  if (SSL_CTX_use_PrivateKey_file(tls, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return make_error(ApiServerError::tls_error,
                      "cannot load private key " + options.key_file + " (PEM expected): " + openssl_errors());
  }
  if (SSL_CTX_check_private_key(tls) != 1) {
    return make_error(ApiServerError::tls_error,
                      "private key " + options.key_file + " does not match certificate " + options.cert_file);
  }
  if (!options.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(tls, options.client_ca_file.c_str(), nullptr) != 1) {
      return make_error(ApiServerError::tls_error,
                        "cannot load client CA " + options.client_ca_file + ": " + openssl_errors());
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.client_ca_file.c_str());
    if (names) SSL_CTX_set_client_CA_list(tls, names);
    SSL_CTX_set_verify(tls, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return Ok{};
}

Result<Ok, ApiServerError> ApiServer::Impl::setup_tcp() {
  std::string host, port_str;
  const std::string& listen = options.listen;
  if (!listen.empty() && listen.front() == '[') {
    const auto close = listen.find("]:");
    if (close == std::string::npos) {
      return make_error(ApiServerError::invalid_argument, "listen '" + listen + "' must be [v6-address]:port");
    }
    host = listen.substr(1, close - 1);
    port_str = listen.substr(close + 2);
  } else {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos || listen.find(':') != colon) {
      return make_error(ApiServerError::invalid_argument,
                        "listen '" + listen + "' must be host:port (IPv6 addresses in brackets: [::1]:9443)");
    }
    host = listen.substr(0, colon);
    port_str = listen.substr(colon + 1);
  }
  if (port_str.empty() || port_str.size() > 5 || port_str.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port_str) > 65535) {
    return make_error(ApiServerError::invalid_argument, "listen '" + listen + "': port must be 0-65535");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_str.c_str(), &hints, &found); rc != 0) {
    return make_error(ApiServerError::invalid_argument, "listen '" + listen + "': " + gai_strerror(rc));
  }
  std::string last_error = "no address";
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    tcp_fd = fd;
    break;
  }
  freeaddrinfo(found);
  if (tcp_fd < 0) {
    return make_error(ApiServerError::bind_failed,
                      "cannot listen on " + listen + ": " + last_error + " (is another process using the port?)");
  }
  return Ok{};
}

Result<Ok, ApiServerError> ApiServer::Impl::setup_unix() {
  const std::string& path = options.unix_socket;
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return make_error(ApiServerError::invalid_argument, "unix socket path " + path + " is too long");
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (const auto slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
    ::mkdir(path.substr(0, slash).c_str(), 0755);  // e.g. /run/axon; exists is fine
  }
  // A socket file left by a previous run would make bind fail; only a socket is removed.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return make_error(ApiServerError::bind_failed, path + " exists and is not a socket; refusing to replace it");
    }
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (probe >= 0) ::close(probe);
    if (live) {
      return make_error(ApiServerError::bind_failed,
                        "another server is listening on " + path + "; stop it or choose another unix_socket");
    }
    ::unlink(path.c_str());
  }
  unix_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (unix_fd < 0)
    return make_error(ApiServerError::bind_failed, std::string("socket(AF_UNIX): ") + std::strerror(errno));
  if (::bind(unix_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(unix_fd, 16) != 0) {
    return make_error(ApiServerError::bind_failed, "cannot listen on " + path + ": " + std::strerror(errno));
  }
  // Anyone may connect; the peer's uid (SO_PEERCRED) decides. Non-root peers get a clear
  // 403 rather than a bare EACCES.
  ::chmod(path.c_str(), 0666);
  return Ok{};
}

void ApiServer::Impl::accept_loop() {
  std::vector<pollfd> fds;
  fds.push_back(pollfd{wake[0], POLLIN, 0});
  if (tcp_fd >= 0) fds.push_back(pollfd{tcp_fd, POLLIN, 0});
  if (unix_fd >= 0) fds.push_back(pollfd{unix_fd, POLLIN, 0});
  while (!stopping.load()) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      AXON_LOG_ERROR(kLog, "poll on the API listeners failed: %s", std::strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      const int fd = ::accept4(fds[i].fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
      if (fd < 0) {
        // Out of descriptors: the pending connection stays readable, so back off instead
        // of spinning on poll. Anything else (the peer left already) needs nothing.
        if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      Connection conn;
      conn.fd = fd;
      conn.is_unix = fds[i].fd == unix_fd;
      if (conn.is_unix) {
        ucred cred{};
        socklen_t cred_len = sizeof cred;
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0) {
          ::close(fd);
          continue;
        }
        conn.uid = cred.uid;
        conn.remote = "unix:uid=" + std::to_string(cred.uid);
      } else {
        char host[INET6_ADDRSTRLEN] = "?";
        std::uint16_t peer_port = 0;
        if (peer.ss_family == AF_INET) {
          const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
          ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
          peer_port = ntohs(a->sin_port);
          conn.remote = std::string(host) + ":" + std::to_string(peer_port);
        } else {
          const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
          ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
          peer_port = ntohs(a->sin6_port);
          conn.remote = "[" + std::string(host) + "]:" + std::to_string(peer_port);
        }
      }
      // Timeouts bound how long a slow or silent client can hold a worker.
      timeval tv{};
      tv.tv_sec = options.read_timeout_ms / 1000;
      tv.tv_usec = static_cast<suseconds_t>(options.read_timeout_ms % 1000) * 1000;
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      {
        std::lock_guard lock(queue_mu);
        if (open_connections >= options.max_connections) {
          std::lock_guard stats(stats_mu);
          ++connections_refused;
          ::close(fd);
          continue;
        }
        ++open_connections;
        queue.push_back(std::move(conn));
      }
      {
        std::lock_guard stats(stats_mu);
        ++connections_accepted;
      }
      queue_cv.notify_one();
    }
  }
}

void ApiServer::Impl::worker_loop() {
  for (;;) {
    Connection conn;
    {
      std::unique_lock lock(queue_mu);
      queue_cv.wait(lock, [&] { return stopping.load() || !queue.empty(); });
      if (stopping.load()) return;
      conn = std::move(queue.front());
      queue.pop_front();
      active.insert(conn.fd);
    }
    try {
      serve(conn);
    } catch (const std::exception& e) {
      AXON_LOG_ERROR(kLog, "connection from %s: %s", conn.remote.c_str(), e.what());
    }
    linger_close_input(conn.fd);
    {
      std::lock_guard lock(queue_mu);
      active.erase(conn.fd);
      --open_connections;
      ::close(conn.fd);
    }
  }
}

void ApiServer::Impl::serve(Connection& conn) {
  if (conn.is_unix) {
    PlainTransport t(conn.fd);
    serve_http(t, conn);
    return;
  }
  SSL* ssl = SSL_new(tls);
  if (!ssl) return;
  SSL_set_fd(ssl, conn.fd);
  if (SSL_accept(ssl) != 1) {
    AXON_LOG_DEBUG(kLog, "TLS handshake with %s failed: %s", conn.remote.c_str(), openssl_errors().c_str());
    SSL_free(ssl);
    std::lock_guard lock(stats_mu);
    ++tls_handshake_failures;
    return;
  }
  TlsTransport t(ssl);
  serve_http(t, conn);
}

void ApiServer::Impl::serve_http(Transport& t, const Connection& conn) {
  std::string buffered;
  char chunk[8192];
  while (!stopping.load()) {
    // The socket timeout bounds each read; this bounds the whole head, so a client that
    // trickles a byte just inside every timeout still cannot keep a worker.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.read_timeout_ms);
    std::size_t head_end;
    while ((head_end = buffered.find("\r\n\r\n")) == std::string::npos) {
      if (buffered.size() > http::kMaxHeaderBytes) break;
      if (std::chrono::steady_clock::now() > deadline) return;
      const long n = t.read_some(chunk, sizeof chunk);
      if (n <= 0) return;  // closed, error or timeout
      buffered.append(chunk, static_cast<std::size_t>(n));
      // Tolerate blank lines before a request line (RFC 9112 2.2).
      while (buffered.rfind("\r\n", 0) == 0) buffered.erase(0, 2);
    }
    if (head_end == std::string::npos || head_end + 4 > http::kMaxHeaderBytes) {
      Response r =
          error_response(431, "request header block exceeds " + std::to_string(http::kMaxHeaderBytes) + " bytes");
      (void)t.write_all(http::serialize(r, false));
      std::lock_guard lock(stats_mu);
      ++requests[{"other", 431}];
      return;
    }
    http::HeadError head_error{};
    const auto head = http::parse_head(std::string_view(buffered).substr(0, head_end), head_error);
    buffered.erase(0, head_end + 4);
    if (!head) {
      (void)t.write_all(http::serialize(error_response(head_error.status, head_error.message), false));
      std::lock_guard lock(stats_mu);
      ++requests[{"other", head_error.status}];
      return;
    }
    if (!handle(t, conn, *head, buffered)) return;
  }
}

bool ApiServer::Impl::handle(Transport& t, const Connection& conn, const http::RequestHead& head,
                             std::string& buffered) {
  std::string identity = "-";
  bool body_consumed = false;
  bool fatal = false;
  Response r = dispatch(conn, head, buffered, t, identity, body_consumed, fatal);

  bool keep_alive = head.minor_version == 1 && !fatal && body_consumed;
  if (const auto* c = head.header("connection"); c && (*c == "close" || *c == "Close")) keep_alive = false;
  {
    // Another connection is waiting for a worker: don't let this one idle on it.
    std::lock_guard lock(queue_mu);
    if (!queue.empty()) keep_alive = false;
  }
  const bool sent = t.write_all(http::serialize(r, keep_alive));

  const std::string method_label =
      head.method == "GET" || head.method == "POST" || head.method == "PUT" || head.method == "DELETE" ? head.method
                                                                                                       : "other";
  {
    std::lock_guard lock(stats_mu);
    ++requests[{method_label, r.status}];
  }
  if (is_mutating(head.method)) {
    std::string error;
    if (r.status >= 400) {
      try {
        error = json::parse(r.body).value("error", "");
      } catch (const std::exception&) {
        error = "status " + std::to_string(r.status);
      }
    }
    audit(identity, conn, head.method, head.path, r.status, error);
  }
  return sent && keep_alive;
}

Response ApiServer::Impl::dispatch(const Connection& conn, const http::RequestHead& head, std::string& buffered,
                                   Transport& t, std::string& identity, bool& body_consumed, bool& fatal) {
  // Framing first: until the body's length is known we cannot answer and keep the connection.
  std::size_t content_length = 0;
  if (head.header("transfer-encoding")) {
    fatal = true;
    return error_response(501, "Transfer-Encoding (e.g. chunked) is not supported; send the body with Content-Length");
  }
  bool have_length = false;
  for (const auto& [name, value] : head.headers) {
    if (name != "content-length") continue;
    if (value.empty() || value.size() > 18 || value.find_first_not_of("0123456789") != std::string::npos) {
      fatal = true;
      return error_response(400, "invalid Content-Length '" + value + "'");
    }
    const std::size_t v = std::stoull(value);
    if (have_length && v != content_length) {
      fatal = true;
      return error_response(400, "conflicting Content-Length headers");
    }
    content_length = v;
    have_length = true;
  }
  if (content_length > options.max_body_bytes) {
    fatal = true;
    return error_response(413, "request body of " + std::to_string(content_length) + " bytes exceeds the limit of " +
                                   std::to_string(options.max_body_bytes));
  }
  body_consumed = content_length == 0;  // until read, a pending body forbids keep-alive

  // Route.
  const auto raw_segments = split_path(head.path);
  const RouteDef* route = nullptr;
  Call call;
  std::vector<std::string> allowed;
  for (const auto& def : route_table()) {
    std::map<std::string, std::string> params;
    if (!match_template(split_path(def.path), raw_segments, params)) continue;
    if (def.method == head.method) {
      route = &def;
      call.params = std::move(params);
      break;
    }
    allowed.push_back(def.method);
  }
  const bool is_health = route && route->path == "/v1/health";

  // Authenticate.
  Role role = Role::reader;
  if (!is_health) {
    if (conn.is_unix) {
      identity = "uid:" + std::to_string(conn.uid);
      if (conn.uid != 0) {
        count_auth_failure("unix_not_root");
        return error_response(403, "only root (uid 0) may use the unix socket; use HTTPS with a token");
      }
      role = Role::admin;
    } else {
      const std::string* auth = head.header("authorization");
      if (!auth || auth->size() < 7 || strncasecmp(auth->c_str(), "Bearer ", 7) != 0) {
        count_auth_failure("missing");
        Response r = error_response(401, "missing bearer token: send 'Authorization: Bearer <token>'");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"axon\"");
        return r;
      }
      std::shared_ptr<const TokenStore> store;
      {
        std::lock_guard lock(tokens_mu);
        store = tokens;
      }
      const auto who = store->lookup(auth->substr(7));
      if (!who) {
        count_auth_failure("invalid");
        Response r = error_response(401, "invalid bearer token");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"axon\", error=\"invalid_token\"");
        return r;
      }
      identity = who->name;
      role = who->role;
    }
  }

  if (!route) {
    if (allowed.empty()) return error_response(404, "no route " + head.method + " " + head.path);
    std::string allow;
    for (const auto& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    Response r = error_response(405, "method " + head.method + " not allowed on " + head.path + "; allowed: " + allow);
    r.headers.emplace_back("Allow", allow);
    return r;
  }
  if (is_mutating(head.method) && role != Role::admin) {
    count_auth_failure("forbidden");
    return error_response(403, "token '" + identity + "' has the reader role; " + head.method + " needs admin");
  }
  if (!is_health) {
    if (const std::uint32_t retry = limiter.take(identity); retry > 0) {
      {
        std::lock_guard lock(stats_mu);
        ++rate_limited;
      }
      Response r =
          error_response(429, "rate limit exceeded for '" + identity + "'; retry in " + std::to_string(retry) + " s");
      r.headers.emplace_back("Retry-After", std::to_string(retry));
      return r;
    }
  }

  if (!http::parse_query(head.query, call.query)) return error_response(400, "malformed query string");
  for (const auto& [key, value] : call.query) {
    if (std::find(route->query_params.begin(), route->query_params.end(), key) == route->query_params.end()) {
      return error_response(400, "unknown query parameter '" + key + "' for " + route->method + " " + route->path);
    }
  }

  // Body: only now, for an authorised request that fits.
  if (content_length > 0) {
    if (const auto* expect = head.header("expect"); expect && strcasecmp(expect->c_str(), "100-continue") == 0) {
      if (!t.write_all("HTTP/1.1 100 Continue\r\n\r\n")) {
        fatal = true;
        return error_response(400, "connection lost");
      }
    }
    char chunk[8192];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.read_timeout_ms);
    while (buffered.size() < content_length) {
      const long n = std::chrono::steady_clock::now() > deadline ? -1 : t.read_some(chunk, sizeof chunk);
      if (n <= 0) {
        fatal = true;
        return error_response(408, "timed out or disconnected while reading the request body");
      }
      buffered.append(chunk, static_cast<std::size_t>(n));
    }
    call.body = buffered.substr(0, content_length);
    buffered.erase(0, content_length);
    body_consumed = true;
  }

  if (route->path == "/metrics") {
    auto text = api.metrics();
    if (!text) return error_response(text.error());
    if (!text->empty() && text->back() != '\n') *text += '\n';
    *text += own_metrics();
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = std::move(text.value());
    return r;
  }
  // ControlApi reports errors as values; this is only the backstop for what the standard
  // library or nlohmann-json throw (std::bad_alloc, ...), so the client still gets a 500.
  try {
    return route->handler(api, call);
  } catch (const std::exception& e) {
    AXON_LOG_ERROR(kLog, "%s %s failed: %s", head.method.c_str(), head.path.c_str(), e.what());
    return error_response(500, "internal error; see the control plane's log");
  }
}

void ApiServer::Impl::audit(const std::string& identity, const Connection& conn, const std::string& method,
                            const std::string& path, int status, const std::string& error) {
  json line{{"time", utc_now_iso8601()}, {"identity", identity}, {"remote", conn.remote},
            {"method", method},          {"path", path},         {"status", status}};
  if (status < 400) {
    line["result"] = "ok";
  } else {
    line["result"] = "error";
    line["error"] = error;
  }
  // error_handler::replace: a path with invalid UTF-8 must not stop the audit.
  const std::string text = line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  if (audit_fd < 0) {
    AXON_LOG_INFO("audit", "%s", line.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return;
  }
  std::lock_guard lock(audit_mu);
  if (::write(audit_fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    AXON_LOG_ERROR(kLog, "cannot write audit log %s: %s; entry: %s", options.audit_log.c_str(), std::strerror(errno),
                   text.c_str());
  }
}

std::string ApiServer::Impl::own_metrics() {
  MetricsWriter w;
  std::lock_guard lock(stats_mu);
  w.family("axon_api_requests_total", "counter", "API requests answered, by method and HTTP status.");
  for (const auto& [key, count] : requests) {
    w.sample({{"method", key.first}, {"code", std::to_string(key.second)}}, static_cast<double>(count));
  }
  w.family("axon_api_auth_failures_total", "counter",
           "Requests refused by authentication or authorisation (missing, invalid, forbidden, unix_not_root).");
  for (const char* reason : {"missing", "invalid", "forbidden", "unix_not_root"}) {
    const auto it = auth_failures.find(reason);
    w.sample({{"reason", reason}}, static_cast<double>(it == auth_failures.end() ? 0 : it->second));
  }
  w.family("axon_api_rate_limited_total", "counter", "Requests refused with 429 by the per-identity rate limit.");
  w.sample(static_cast<double>(rate_limited));
  w.family("axon_api_connections_accepted_total", "counter", "Connections accepted by the API listeners.");
  w.sample(static_cast<double>(connections_accepted));
  w.family("axon_api_connections_refused_total", "counter",
           "Connections closed at once: the connection cap was reached.");
  w.sample(static_cast<double>(connections_refused));
  w.family("axon_api_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed (old protocol, no or bad client certificate, not TLS).");
  w.sample(static_cast<double>(tls_handshake_failures));
  return w.str();
}

void ApiServer::Impl::shutdown_all() {
  if (stopping.exchange(true)) return;
  if (wake[1] >= 0) {
    const char c = 'x';
    (void)::write(wake[1], &c, 1);
  }
  if (acceptor.joinable()) acceptor.join();
  {
    std::lock_guard lock(queue_mu);
    for (const int fd : active) ::shutdown(fd, SHUT_RDWR);  // wakes blocked reads
    for (auto& conn : queue) ::close(conn.fd);
    queue.clear();
  }
  queue_cv.notify_all();
  for (auto& w : workers) {
    if (w.joinable()) w.join();
  }
  if (tcp_fd >= 0) ::close(tcp_fd);
  if (unix_fd >= 0) {
    ::close(unix_fd);
    ::unlink(options.unix_socket.c_str());
  }
  tcp_fd = unix_fd = -1;
}

// --- public API ------------------------------------------------------------------------------

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() {
  stop();
  for (int& fd : impl_->wake) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  if (impl_->audit_fd >= 0) ::close(impl_->audit_fd);
  if (impl_->tls) SSL_CTX_free(impl_->tls);
}

void ApiServer::stop() {
  impl_->shutdown_all();
}

std::uint16_t ApiServer::tcp_port() const {
  return impl_->port;
}

Result<Ok, ApiServerError> ApiServer::reload_tokens() {
  if (impl_->options.tokens_file.empty()) return Ok{};
  auto loaded = TokenStore::load(impl_->options.tokens_file);
  if (!loaded) return loaded.error();
  auto fresh = std::make_shared<const TokenStore>(std::move(loaded.value()));
  AXON_LOG_INFO(kLog, "loaded %zu API token(s) from %s", fresh->size(), impl_->options.tokens_file.c_str());
  std::lock_guard lock(impl_->tokens_mu);
  impl_->tokens = std::move(fresh);
  return Ok{};
}

std::vector<ApiServer::Route> ApiServer::routes() {
  std::vector<Route> out;
  for (const auto& def : route_table()) out.push_back(Route{def.method, def.path});
  return out;
}

Result<std::unique_ptr<ApiServer>, ApiServerError> ApiServer::start(const ApiServerOptions& options, ControlApi& api) {
  if (options.listen.empty() && options.unix_socket.empty()) {
    return make_error(ApiServerError::invalid_argument, "the API needs a TCP listen address, a unix socket, or both");
  }
  if (!options.listen.empty() && (options.cert_file.empty() || options.key_file.empty())) {
    return make_error(ApiServerError::invalid_argument,
                      "the HTTPS listener " + options.listen + " needs cert_file and key_file (PEM)");
  }
  if (options.threads == 0 || options.max_connections == 0 || options.read_timeout_ms == 0) {
    return make_error(ApiServerError::invalid_argument, "threads, max_connections and read_timeout_ms must be >= 1");
  }
  if (options.rate_per_second > 0 && options.rate_burst == 0) {
    return make_error(ApiServerError::invalid_argument, "rate_burst must be >= 1 when rate_per_second is set");
  }
  auto impl = std::make_unique<Impl>(options, api);
  std::unique_ptr<ApiServer> server(new ApiServer(std::move(impl)));
  Impl& s = *server->impl_;

  if (!options.tokens_file.empty()) {
    if (auto r = server->reload_tokens(); !r) return r.error();
  }
  if (!options.audit_log.empty()) {
    s.audit_fd = ::open(options.audit_log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (s.audit_fd < 0) {
      return make_error(ApiServerError::invalid_argument,
                        "cannot open audit log " + options.audit_log + ": " + std::strerror(errno));
    }
  }
  if (!options.listen.empty()) {
    if (auto r = s.setup_tls(); !r) return r.error();
    if (auto r = s.setup_tcp(); !r) return r.error();
  }
  if (!options.unix_socket.empty()) {
    if (auto r = s.setup_unix(); !r) return r.error();
  }
  if (::pipe2(s.wake, O_CLOEXEC) != 0) {
    return make_error(ApiServerError::bind_failed, std::string("pipe2: ") + std::strerror(errno));
  }
  // OpenSSL writes with write(2), which raises SIGPIPE when a client has gone. SIGPIPE is
  // delivered to the writing thread, so blocking it in our threads (they inherit the mask)
  // turns it into EPIPE without touching the daemon's process-wide dispositions.
  sigset_t pipe_only, previous;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
  for (std::uint32_t i = 0; i < options.threads; ++i) s.workers.emplace_back([&s] { s.worker_loop(); });
  s.acceptor = std::thread([&s] { s.accept_loop(); });
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  AXON_LOG_INFO(kLog, "REST API listening on %s%s%s", options.listen.empty() ? "" : options.listen.c_str(),
                options.listen.empty() || options.unix_socket.empty() ? "" : " and ", options.unix_socket.c_str());
  return server;
}

}  // namespace axon::controlplane
