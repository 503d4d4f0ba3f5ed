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

namespace axon::controlplane::testing {

// In-memory ControlApi with the same error codes as the daemon's contract in model.h.
class FakeControlApi : public ControlApi {
 public:
  ApiResult<SystemStatus> status() override {
    std::lock_guard lock(mu_);
    SystemStatus s;
    s.version = "test";
    s.uptime_ms = 1234;
    s.cgroup_mode = "v1";
    s.dataplane.connected = true;
    s.dataplane.backend = "xdp";
    s.agents = static_cast<std::uint32_t>(agents_.size());
    s.tenants = static_cast<std::uint32_t>(tenants_.size());
    s.workers = static_cast<std::uint32_t>(workers_.size());
    return s;
  }
  ApiResult<std::vector<AgentStatus>> list_agents() override {
    std::lock_guard lock(mu_);
    std::vector<AgentStatus> out;
    for (const auto& [name, a] : agents_) out.push_back(a);
    return out;
  }
  ApiResult<AgentStatus> get_agent(const std::string& name) override {
    std::lock_guard lock(mu_);
    auto* s = find_agent(name);
    if (s == nullptr) return no_agent(name);
    return *s;
  }
  ApiResult<AgentStatus> create_agent(const AgentSpec& spec) override {
    std::lock_guard lock(mu_);
    if (agents_.count(spec.name)) return api_error(ApiErrorCode::conflict, "agent '" + spec.name + "' exists");
    if (!tenants_.count(spec.tenant)) {
      return api_error(ApiErrorCode::invalid_argument, "tenant " + std::to_string(spec.tenant) + " does not exist");
    }
    AgentStatus s;
    s.spec = spec;
    s.workers = spec.pool.min;
    s.warm = spec.pool.min;
    agents_[spec.name] = s;
    WorkerInfo w;
    w.id = spec.name + "-0";
    w.agent = spec.name;
    w.slot = "slot-0";
    w.pid = 4242;
    w.state = WorkerState::warm;
    workers_[w.id] = w;
    return s;
  }
  ApiResult<AgentStatus> replace_agent(const std::string& name, const AgentSpec& spec) override {
    std::lock_guard lock(mu_);
    auto* s = find_agent(name);
    if (s == nullptr) return no_agent(name);
    s->spec = spec;
    return *s;
  }
  ApiResult<Ok> delete_agent(const std::string& name) override {
    std::lock_guard lock(mu_);
    if (agents_.erase(name) == 0) return no_agent(name);
    return Ok{};
  }
  ApiResult<AgentStatus> scale_agent(const std::string& name, const ScaleRequest& request) override {
    std::lock_guard lock(mu_);
    auto* s = find_agent(name);
    if (s == nullptr) return no_agent(name);
    PoolSize pool = s->spec.pool;
    if (request.min) pool.min = *request.min;
    if (request.max) pool.max = *request.max;
    if (pool.min > pool.max) return api_error(ApiErrorCode::invalid_argument, "min exceeds max");
    s->spec.pool = pool;
    return *s;
  }
  ApiResult<AgentStatus> reset_breaker(const std::string& name) override {
    std::lock_guard lock(mu_);
    auto* s = find_agent(name);
    if (s == nullptr) return no_agent(name);
    s->breaker = BreakerState::closed;
    s->breaker_retry_in_ms.reset();
    return *s;
  }
  ApiResult<std::vector<WorkerInfo>> list_workers(const std::optional<std::string>& agent) override {
    std::lock_guard lock(mu_);
    last_worker_filter = agent;
    std::vector<WorkerInfo> out;
    for (const auto& [id, w] : workers_) {
      if (!agent || w.agent == *agent) out.push_back(w);
    }
    return out;
  }
  ApiResult<WorkerInfo> drain_worker(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto* w = find_worker(id);
    if (w == nullptr) return no_worker(id);
    w->state = WorkerState::draining;
    return *w;
  }
  ApiResult<WorkerInfo> kill_worker(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto* w = find_worker(id);
    if (w == nullptr) return no_worker(id);
    w->state = WorkerState::backoff;
    w->pid = 0;
    return *w;
  }
  ApiResult<std::vector<TenantSpec>> list_tenants() override {
    std::lock_guard lock(mu_);
    std::vector<TenantSpec> out;
    for (const auto& [id, t] : tenants_) out.push_back(t);
    return out;
  }
  ApiResult<TenantSpec> get_tenant(std::uint32_t id) override {
    std::lock_guard lock(mu_);
    const auto it = tenants_.find(id);
    if (it == tenants_.end()) return api_error(ApiErrorCode::not_found, "no tenant " + std::to_string(id));
    return it->second;
  }
  ApiResult<TenantSpec> put_tenant(std::uint32_t id, const TenantSpec& spec) override {
    std::lock_guard lock(mu_);
    tenants_[id] = spec;
    return spec;
  }
  ApiResult<Ok> delete_tenant(std::uint32_t id) override {
    std::lock_guard lock(mu_);
    if (!tenants_.count(id)) return api_error(ApiErrorCode::not_found, "no tenant " + std::to_string(id));
    for (const auto& [name, a] : agents_) {
      if (a.spec.tenant == id) return api_error(ApiErrorCode::conflict, "tenant used by agent '" + name + "'");
    }
    tenants_.erase(id);
    return Ok{};
  }
  ApiResult<std::vector<RouteInfo>> list_routes() override {
    std::lock_guard lock(mu_);
    std::vector<RouteInfo> out;
    for (const auto& [name, a] : agents_) out.push_back(RouteInfo{a.spec.id, a.spec.tenant, name, {"slot-0"}});
    return out;
  }
  ApiResult<std::string> metrics() override {
    std::lock_guard lock(mu_);
    MetricsWriter w;
    w.family("axon_agents", "gauge", "Registered agents.");
    w.sample(static_cast<double>(agents_.size()));
    w.family("axon_worker_restarts_total", "counter", "Worker respawns, by agent.");
    for (const auto& [name, a] : agents_) w.sample({{"agent", name}}, static_cast<double>(a.restarts));
    // A label value that needs every escape, so the exposition is checked with them.
    w.sample({{"agent", "we\"ird\\na\nme"}}, 3);
    return w.str();
  }

  std::optional<std::string> last_worker_filter;

 private:
  AgentStatus* find_agent(const std::string& name) {
    const auto it = agents_.find(name);
    return it == agents_.end() ? nullptr : &it->second;
  }
  WorkerInfo* find_worker(const std::string& id) {
    const auto it = workers_.find(id);
    return it == workers_.end() ? nullptr : &it->second;
  }
  static ApiError no_agent(const std::string& name) {
    return api_error(ApiErrorCode::not_found, "no agent named '" + name + "'");
  }
  static ApiError no_worker(const std::string& id) {
    return api_error(ApiErrorCode::not_found, "no worker '" + id + "'");
  }
  std::mutex mu_;
  std::map<std::string, AgentStatus> agents_;
  std::map<std::string, WorkerInfo> workers_;
  std::map<std::uint32_t, TenantSpec> tenants_;
};

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
