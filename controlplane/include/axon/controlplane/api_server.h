// The control plane's REST API server: HTTPS (optionally mTLS) on TCP plus plain HTTP on a
// root-only unix socket, bearer-token auth with reader/admin roles, per-identity rate
// limits, an audit log of every change, and the /v1 resources mapped onto ControlApi.
//
// The daemon owns a ControlApi and starts one ApiServer over it; everything HTTP, TLS and
// JSON stays behind this header (no OpenSSL type leaks out).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "axon/common/result.h"
#include "axon/controlplane/model.h"

namespace axon::controlplane {

enum class Role { reader, admin };  // reader: GET only; admin: everything

struct ApiServerOptions {
  std::string listen = "127.0.0.1:9443";  // host:port or [v6]:port; "" = no TCP listener
  std::string cert_file, key_file;        // PEM; required when listen is set
  std::string client_ca_file;             // non-empty = mTLS: client certificates required and verified
  std::string tokens_file;                // see TokenStore; "" = no tokens (TCP then serves only /v1/health)
  std::string audit_log;                  // JSON lines appended here; "" = stderr via the log
  std::string unix_socket;                // e.g. /run/axon/api.sock: plain HTTP, peer uid 0 = admin "uid:0"
  // Socket activation: listening sockets passed by the service manager (systemd::
  // activated_sockets()). When set, the server serves them instead of binding `listen` or
  // `unix_socket`, owns them from start() on, and leaves the socket file to systemd.
  int tcp_listen_fd = -1;
  int unix_listen_fd = -1;
  double rate_per_second = 20;  // token bucket per token (and per unix peer uid); <= 0 = no limit
  std::uint32_t rate_burst = 40;
  std::size_t max_body_bytes = 1 << 20;  // a larger Content-Length is refused (413) unread
  std::uint32_t threads = 4;             // threads running the event loop; connections are not tied to them
  std::uint32_t max_connections = 1024;  // open at once; beyond this, new connections are closed at once
  // Deadline of each step: the TLS handshake, the idle wait plus the whole request head, the
  // body, the response write. A silent or trickling client loses its connection.
  std::uint32_t read_timeout_ms = 10000;
};

enum class ApiServerError { invalid_argument, tls_error, bind_failed, tokens_error };

class ApiServer {
 public:
  // Loads the certificates and tokens, binds the listeners and starts the threads. `api`
  // must outlive the server.
  static Result<std::unique_ptr<ApiServer>, ApiServerError> start(const ApiServerOptions& options, ControlApi& api);

  ~ApiServer();  // stops listening, closes connections, joins threads
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  void stop();                                 // idempotent
  std::uint16_t tcp_port() const;              // the bound port (listen on port 0 in tests); 0 without TCP
  Result<Ok, ApiServerError> reload_tokens();  // re-reads tokens_file (on SIGHUP); keeps the old set on error

  struct Route {
    std::string method, path;  // path templated as in OpenAPI: /v1/agents/{name}
  };
  static std::vector<Route> routes();  // every route served, for the OpenAPI test

 private:
  struct Impl;
  explicit ApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The tokens file: one line per token, "<name> <reader|admin> sha256:<64 hex>"; '#' starts
// a comment. Only hashes are stored; the plaintext is shown once, at creation.
class TokenStore {
 public:
  struct Identity {
    std::string name;
    Role role = Role::reader;
  };

  // Creates a random 256-bit token (base64url, no padding), appends its hash line to
  // tokens_file (mode 0600, created if missing) and returns the plaintext.
  static Result<std::string, ApiServerError> create(const std::string& tokens_file, const std::string& name, Role role);

  static Result<TokenStore, ApiServerError> load(const std::string& tokens_file);

  // Hashes the presented token and compares it with every entry in constant time.
  std::optional<Identity> lookup(const std::string& token) const;

  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Identity identity;
    std::array<unsigned char, 32> sha256;
  };
  std::vector<Entry> entries_;
};

// Prometheus text exposition format (0.0.4) writer; the daemon builds ControlApi::metrics()
// with it and the API server appends its own families.
class MetricsWriter {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // Starts a family: "# HELP" and "# TYPE" lines. type is "counter" (name should end in
  // _total), "gauge" or "histogram" (samples through the suffixed sample()). Each family must be written once, with all
  // its samples together.
  MetricsWriter& family(const std::string& name, const std::string& type, const std::string& help);
  // A sample of the current family; label values are escaped (\\, \", \n).
  MetricsWriter& sample(const Labels& labels, double value);
  MetricsWriter& sample(double value) { return sample({}, value); }
  // A sample named after the family plus `suffix`: a histogram's _bucket, _sum and _count.
  MetricsWriter& sample(const std::string& suffix, const Labels& labels, double value);
  const std::string& str() const { return out_; }

 private:
  std::string out_;
  std::string current_;
};

}  // namespace axon::controlplane
