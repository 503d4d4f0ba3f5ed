// The scripted test server behind test_tls_server.h: real sockets, real TLS.
#include "test_tls_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace axon::testing {
namespace {

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  }
  return s;
}

}  // namespace

std::string RecordedRequest::header(const std::string& name) const {
  for (const auto& [n, v] : headers) {
    if (lower(n) == lower(name)) return v;
  }
  return {};
}

bool generate_certificate(const std::string& openssl, const std::string& dir, const std::string& stem,
                          const std::string& san) {
  std::string command =
      openssl + " req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj '/CN=" + stem +
      "' -addext 'subjectAltName=" + san + "' -keyout '" + dir + "/" + stem + ".key' -out '" + dir + "/" + stem +
      ".crt' >/dev/null 2>&1";
  int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << command;
  return rc == 0;
}

std::string TestHttpServer::response(int status, const std::string& reason, const std::string& body,
                                     const std::string& extra_headers) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: application/json\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

std::unique_ptr<TestHttpServer> TestHttpServer::start(const Options& options, Handler handler) {
  signal(SIGPIPE, SIG_IGN);  // SSL_write to a client that gave up must not kill the test
  std::unique_ptr<TestHttpServer> server(new TestHttpServer());
  server->options_ = options;
  server->handler_ = std::move(handler);
  if (options.mode == Mode::unix_socket) {
    server->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, options.unix_path.c_str(), sizeof addr.sun_path - 1);
    ::unlink(options.unix_path.c_str());
    if (::bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "bind " << options.unix_path << ": " << std::strerror(errno);
      return nullptr;
    }
  } else {
    server->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "bind: " << std::strerror(errno);
      return nullptr;
    }
    socklen_t len = sizeof addr;
    getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    server->port_ = ntohs(addr.sin_port);
  }
  ::listen(server->listen_fd_, 16);
  if (options.mode == Mode::tls) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    server->ctx_ = ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      ADD_FAILURE() << "cannot load " << options.cert_file;
      return nullptr;
    }
    if (!options.client_ca_file.empty()) {
      SSL_CTX_load_verify_locations(ctx, options.client_ca_file.c_str(), nullptr);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
  }
  server->thread_ = std::thread([s = server.get()] { s->serve(); });
  return server;
}

TestHttpServer::~TestHttpServer() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
  if (options_.mode == Mode::unix_socket) ::unlink(options_.unix_path.c_str());
}

std::vector<RecordedRequest> TestHttpServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

void TestHttpServer::serve() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) != 1) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    handle(fd);
    ::close(fd);
  }
}

void TestHttpServer::handle(int fd) {
  if (!options_.greeting.empty()) {
    ssize_t ignored = ::send(fd, options_.greeting.data(), options_.greeting.size(), MSG_NOSIGNAL);
    (void)ignored;
    return;
  }
  SSL* ssl = nullptr;
  if (ctx_ != nullptr) {
    ssl = SSL_new(static_cast<SSL_CTX*>(ctx_));
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1) {
      ERR_clear_error();
      failed_handshakes_.fetch_add(1);
      SSL_free(ssl);
      return;
    }
  }
  auto read_some = [&](char* buffer, std::size_t size) -> long {
    if (ssl != nullptr) return SSL_read(ssl, buffer, int(size));
    return long(::recv(fd, buffer, size, 0));
  };
  std::string raw;
  char buffer[4096];
  std::size_t head_end = std::string::npos;
  std::size_t content_length = 0;
  RecordedRequest request;
  for (;;) {
    long n = read_some(buffer, sizeof buffer);
    if (n <= 0) break;
    raw.append(buffer, std::size_t(n));
    if (head_end == std::string::npos) {
      head_end = raw.find("\r\n\r\n");
      if (head_end == std::string::npos) continue;
      std::size_t line_end = raw.find("\r\n");
      std::string line = raw.substr(0, line_end);
      std::size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
      request.method = line.substr(0, sp1);
      request.path = line.substr(sp1 + 1, sp2 - sp1 - 1);
      std::size_t pos = line_end + 2;
      while (pos < head_end) {
        std::size_t eol = raw.find("\r\n", pos);
        std::string h = raw.substr(pos, eol - pos);
        std::size_t colon = h.find(':');
        std::string value = h.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        request.headers.emplace_back(h.substr(0, colon), value);
        pos = eol + 2;
      }
      std::string cl = request.header("Content-Length");
      content_length = cl.empty() ? 0 : std::stoul(cl);
    }
    if (raw.size() >= head_end + 4 + content_length) break;
  }
  if (head_end != std::string::npos) {
    request.body = raw.substr(head_end + 4, content_length);
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(request);
    }
    std::string reply = handler_(request);
    std::size_t sent = 0;
    while (sent < reply.size()) {
      long n = ssl != nullptr ? SSL_write(ssl, reply.data() + sent, int(reply.size() - sent))
                              : long(::send(fd, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL));
      if (n <= 0) break;
      sent += std::size_t(n);
    }
  }
  if (ssl != nullptr) {
    SSL_shutdown(ssl);
    SSL_free(ssl);
  }
}

}  // namespace axon::testing
