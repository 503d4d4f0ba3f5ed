// ApiServer: the listeners, TLS and the wiring of the REST layer's parts: the transport
// (transport.cc, Boost.Beast) parses requests and hands them to the pipeline (pipeline.cc:
// authenticate, authorize, rate limit, route, handle, audit), whose routes live one file per
// resource family in handlers/.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "axon/common/log.h"
#include "axon/controlplane/api_server.h"

#include "api/pipeline.h"
#include "api/transport.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "api";

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

}  // namespace

struct ApiServer::Impl {
  Impl(const ApiServerOptions& o, ControlApi& a) : options(o), pipeline(options, a) {}
  ~Impl() {
    transport.reset();
    if (tcp_fd >= 0) ::close(tcp_fd);
    if (unix_fd >= 0) ::close(unix_fd);
    if (tls) SSL_CTX_free(tls);
  }

  ApiServerOptions options;
  api::Pipeline pipeline;
  SSL_CTX* tls = nullptr;
  int tcp_fd = -1;   // until the transport owns it
  int unix_fd = -1;  // until the transport owns it
  std::uint16_t port = 0;
  bool unix_bound = false;  // we created the socket file and remove it on stop
  std::unique_ptr<api::Transport> transport;

  Result<Ok, ApiServerError> setup_tls();
  Result<Ok, ApiServerError> setup_tcp();
  Result<Ok, ApiServerError> setup_unix();
  std::uint16_t bound_port() const;
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
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
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
  if (::bind(unix_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(unix_fd, SOMAXCONN) != 0) {
    return make_error(ApiServerError::bind_failed, "cannot listen on " + path + ": " + std::strerror(errno));
  }
  unix_bound = true;
  // Anyone may connect; the peer's uid (SO_PEERCRED) decides. Non-root peers get a clear
  // 403 rather than a bare EACCES.
  ::chmod(path.c_str(), 0666);
  return Ok{};
}

std::uint16_t ApiServer::Impl::bound_port() const {
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(tcp_fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) return 0;
  return ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

void ApiServer::Impl::shutdown_all() {
  if (transport) transport->stop();
  if (unix_bound) {
    ::unlink(options.unix_socket.c_str());
    unix_bound = false;
  }
}

// --- public API ------------------------------------------------------------------------------

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() {
  stop();
}

void ApiServer::stop() {
  impl_->shutdown_all();
}

std::uint16_t ApiServer::tcp_port() const {
  return impl_->port;
}

Result<Ok, ApiServerError> ApiServer::reload_tokens() {
  return impl_->pipeline.reload_tokens();
}

std::vector<ApiServer::Route> ApiServer::routes() {
  std::vector<Route> out;
  for (const auto& def : api::router().routes()) out.push_back(Route{def.method, def.path});
  return out;
}

Result<std::unique_ptr<ApiServer>, ApiServerError> ApiServer::start(const ApiServerOptions& options, ControlApi& api) {
  const bool tcp = !options.listen.empty() || options.tcp_listen_fd >= 0;
  if (!tcp && options.unix_socket.empty() && options.unix_listen_fd < 0) {
    return make_error(ApiServerError::invalid_argument, "the API needs a TCP listen address, a unix socket, or both");
  }
  if (tcp && (options.cert_file.empty() || options.key_file.empty())) {
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
  if (auto r = s.pipeline.open_audit_log(); !r) return r.error();
  // Sockets passed by the service manager are ours from here on, whatever happens next.
  s.tcp_fd = options.tcp_listen_fd;
  s.unix_fd = options.unix_listen_fd;
  if (tcp) {
    if (auto r = s.setup_tls(); !r) return r.error();
    if (s.tcp_fd >= 0) {
      s.port = s.bound_port();
    } else if (auto r = s.setup_tcp(); !r) {
      return r.error();
    }
  }
  if (s.unix_fd < 0 && !options.unix_socket.empty()) {
    if (auto r = s.setup_unix(); !r) return r.error();
  }
  auto transport = api::Transport::start(s.options, s.pipeline, s.tls, s.tcp_fd, s.unix_fd);
  if (!transport) return transport.error();
  s.transport = std::move(transport.value());
  s.tcp_fd = s.unix_fd = -1;  // the transport's now
  if (options.tcp_listen_fd >= 0 || options.unix_listen_fd >= 0) {
    AXON_LOG_INFO(kLog, "REST API serving the sockets passed by the service manager (TCP port %u%s)",
                  static_cast<unsigned>(s.port), options.unix_listen_fd >= 0 ? ", unix socket" : "");
  } else {
    AXON_LOG_INFO(kLog, "REST API listening on %s%s%s", options.listen.empty() ? "" : options.listen.c_str(),
                  options.listen.empty() || options.unix_socket.empty() ? "" : " and ", options.unix_socket.c_str());
  }
  return server;
}

}  // namespace axon::controlplane
