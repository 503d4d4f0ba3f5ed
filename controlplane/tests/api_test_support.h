// Test support for the REST API tests: an in-memory ControlApi, certificates made with the
// openssl CLI, and a small blocking HTTPS/HTTP client over OpenSSL and raw sockets.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>

#include "axon/controlplane/api_server.h"
#include "axon/controlplane/model.h"
#include "axon/testing/fake_control_api.h"

namespace axon::controlplane::testing {

inline int run(const std::string& command) {
  const int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A scratch directory with a test CA, a server certificate for 127.0.0.1 signed by it, a
// client certificate signed by it, and a self-signed client certificate nobody trusts.
class TestPki {
 public:
  TestPki() {
    char tmpl[] = "/tmp/axon-api-test-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    ::chmod(dir.c_str(), 0755);  // the unix-socket test's unprivileged child must reach it
    const std::string d = dir + "/";
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    std::ofstream(d + "server.ext") << "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
    std::ofstream(d + "client.ext") << "extendedKeyUsage=clientAuth\n";
    const std::string q = " 2>>" + d + "openssl.log";
    const bool ok =
        run("openssl req -x509" + ec + "-keyout " + d + "ca.key -out " + d + "ca.crt -subj /CN=axon-test-ca -days 2" +
            q) == 0 &&
        run("openssl req" + ec + "-keyout " + d + "server.key -out " + d + "server.csr -subj /CN=127.0.0.1" + q) == 0 &&
        run("openssl x509 -req -in " + d + "server.csr -CA " + d + "ca.crt -CAkey " + d +
            "ca.key -CAcreateserial -out " + d + "server.crt -days 2 -extfile " + d + "server.ext" + q) == 0 &&
        run("openssl req" + ec + "-keyout " + d + "client.key -out " + d + "client.csr -subj /CN=axon-test-client" +
            q) == 0 &&
        run("openssl x509 -req -in " + d + "client.csr -CA " + d + "ca.crt -CAkey " + d +
            "ca.key -CAcreateserial -out " + d + "client.crt -days 2 -extfile " + d + "client.ext" + q) == 0 &&
        run("openssl req -x509" + ec + "-keyout " + d + "rogue.key -out " + d + "rogue.crt -subj /CN=rogue -days 2" +
            q) == 0;
    if (!ok) throw std::runtime_error("openssl CLI failed; see " + d + "openssl.log");
  }
  ~TestPki() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return dir + "/" + name; }

  std::string dir;
};

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  std::string error;  // non-empty: no response (TLS or connection failure)
  std::string tls_version;
};

inline HttpResult parse_response(const std::string& raw) {
  HttpResult r;
  std::string rest = raw;
  // Skip interim 1xx responses.
  for (;;) {
    const auto end = rest.find("\r\n\r\n");
    if (end == std::string::npos || rest.size() < 12) {
      r.error = "incomplete response: " + raw.substr(0, 200);
      return r;
    }
    const int status = std::atoi(rest.substr(9, 3).c_str());
    if (status >= 100 && status < 200) {
      rest.erase(0, end + 4);
      continue;
    }
    r.status = status;
    std::istringstream lines(rest.substr(0, end));
    std::string line;
    std::getline(lines, line);
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
    }
    r.body = rest.substr(end + 4);
    if (const auto it = r.headers.find("content-length"); it != r.headers.end()) {
      r.body.resize(std::min(r.body.size(), static_cast<std::size_t>(std::stoull(it->second))));
    }
    return r;
  }
}

inline int connect_tcp(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

inline std::string ssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += std::string(buf) + ";";
  }
  return out;
}

struct TlsClientOptions {
  std::string ca_file;  // verify the server against this
  std::string cert_file, key_file;
  int min_version = 0, max_version = 0;  // 0 = library default
  bool legacy = false;                   // allow TLS 1.0/1.1 on our side (security level 0)
};

// A TLS connection to 127.0.0.1:port; raw bytes in and out.
class TlsClient {
 public:
  TlsClient(std::uint16_t port, const TlsClientOptions& o) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (o.legacy) {
      SSL_CTX_set_security_level(ctx_, 0);
      SSL_CTX_set_cipher_list(ctx_, "DEFAULT:@SECLEVEL=0");
    }
    if (o.min_version) SSL_CTX_set_min_proto_version(ctx_, o.min_version);
    if (o.max_version) SSL_CTX_set_max_proto_version(ctx_, o.max_version);
    if (!o.ca_file.empty()) {
      SSL_CTX_load_verify_locations(ctx_, o.ca_file.c_str(), nullptr);
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    }
    if (!o.cert_file.empty()) {
      SSL_CTX_use_certificate_file(ctx_, o.cert_file.c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx_, o.key_file.c_str(), SSL_FILETYPE_PEM);
    }
    fd_ = connect_tcp(port);
    if (fd_ < 0) {
      error = "connect failed";
      return;
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set1_host(ssl_, "127.0.0.1");
    if (SSL_connect(ssl_) != 1) {
      error = "handshake failed: " + ssl_errors();
      return;
    }
    version = SSL_get_version(ssl_);
  }
  ~TlsClient() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  bool ok() const { return error.empty(); }
  int fd() const { return fd_; }
  bool send(const std::string& data) {
    std::size_t n = 0;
    return SSL_write_ex(ssl_, data.data(), data.size(), &n) == 1 && n == data.size();
  }
  // Reads one response with a Content-Length body (or until close).
  HttpResult read_response() {
    std::string raw;
    char buf[16384];
    for (;;) {
      const auto end = raw.find("\r\n\r\n");
      if (end != std::string::npos) {
        HttpResult r = parse_response(raw);
        if (r.status >= 100 && r.status < 200) {
          raw.erase(0, end + 4);
          continue;
        }
        const auto it = r.headers.find("content-length");
        if (r.status == 204 || (it != r.headers.end() && raw.size() >= end + 4 + std::stoull(it->second))) return r;
      }
      std::size_t n = 0;
      if (SSL_read_ex(ssl_, buf, sizeof buf, &n) != 1) {
        ERR_clear_error();
        HttpResult r = parse_response(raw);
        if (r.status == 0 && r.error.empty()) r.error = "connection closed";
        return r;
      }
      raw.append(buf, n);
    }
  }
  // True when the server closed the connection (EOF or reset) without more data.
  bool closed_by_peer() {
    char c;
    std::size_t n = 0;
    const bool got = SSL_read_ex(ssl_, &c, 1, &n) == 1;
    ERR_clear_error();
    return !got;
  }

  std::string error;
  std::string version;

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
};

inline std::string request_text(const std::string& method, const std::string& path, const std::string& token,
                                const std::string& body = "", const std::string& extra_headers = "",
                                bool keep_alive = false) {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!token.empty()) r += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  r += extra_headers;
  if (!keep_alive) r += "Connection: close\r\n";
  r += "\r\n" + body;
  return r;
}

inline HttpResult https(std::uint16_t port, const TlsClientOptions& o, const std::string& method,
                        const std::string& path, const std::string& token, const std::string& body = "",
                        const std::string& extra_headers = "") {
  TlsClient c(port, o);
  if (!c.ok()) {
    HttpResult r;
    r.error = c.error;
    return r;
  }
  if (!c.send(request_text(method, path, token, body, extra_headers))) {
    HttpResult r;
    r.error = "send failed";
    return r;
  }
  HttpResult r = c.read_response();
  r.tls_version = c.version;
  return r;
}

// Plain HTTP over a unix socket.
inline HttpResult unix_http(const std::string& socket_path, const std::string& raw_request) {
  HttpResult r;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    r.error = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
    return r;
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)::send(fd, raw_request.data(), raw_request.size(), MSG_NOSIGNAL);
  std::string raw;
  char buf[8192];
  for (;;) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return parse_response(raw);
}

}  // namespace axon::controlplane::testing
