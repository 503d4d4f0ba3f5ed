// The request pipeline of the REST API, independent of the transport: a parsed request goes
// through authenticate -> authorize -> rate limit -> route -> handle, and every outcome is
// audited and counted. The transport (transport.cc, Boost.Beast) parses, reads the body
// between admit() and handle(), and writes the response; nothing here does I/O except the
// audit log.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "axon/controlplane/api_server.h"

#include "api/http.h"
#include "api/router.h"

namespace axon::controlplane::api {

// Who is on the other end of a connection.
struct Peer {
  bool is_unix = false;
  uid_t uid = 0;       // unix peers only (SO_PEERCRED)
  std::string remote;  // "127.0.0.1:5555", "[::1]:5555" or "unix:uid=0"
};

// One request as the transport parsed it (head only; the body comes after admit()).
struct Request {
  std::string method;
  std::string path;   // percent-encoded, as sent
  std::string query;  // after '?', without it
  std::optional<std::string> authorization;
  std::optional<std::string> if_match;  // the If-Match header (conditional writes)
  std::size_t content_length = 0;
  std::string body;
};

// A request's way through the pipeline; the steps fill it in order.
struct Exchange {
  const Peer* peer = nullptr;
  Request request;
  std::string identity = "-";  // token name or "uid:N" once authenticated
  Role role = Role::reader;
  const RouteDef* route = nullptr;
  Call call;
  http::Response response;
  bool refused_before_routing = false;  // the transport could not parse it
};

// A token bucket per identity.
class RateLimiter {
 public:
  RateLimiter(double rate, std::uint32_t burst) : rate_(rate), burst_(burst) {}
  // 0 = allowed; otherwise the whole seconds (>= 1) until a request would be allowed.
  std::uint32_t take(const std::string& identity);

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

// Appends one JSON line per audited request to a file (or the log when no file is set).
class AuditLog {
 public:
  AuditLog() = default;
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;
  Result<Ok, ApiServerError> open(const std::string& path);
  void write(const Exchange& exchange);

 private:
  std::string path_;
  int fd_ = -1;
  std::mutex mu_;
};

class Pipeline {
 public:
  Pipeline(const ApiServerOptions& options, ControlApi& api);

  // authenticate, authorize, rate limit, route. true = go on (read the body, then
  // handle()); false = exchange.response holds the refusal to send.
  bool admit(Exchange& exchange);
  // Runs the route's handler on the admitted request and its body.
  void handle(Exchange& exchange);
  // The last step for every request, whatever its outcome: audit and count. The transport
  // calls it before it writes the response, so the audit line precedes the answer.
  void finish(const Exchange& exchange);

  Result<Ok, ApiServerError> reload_tokens();
  Result<Ok, ApiServerError> open_audit_log() { return audit_.open(options_.audit_log); }

  ApiStats& stats() { return stats_; }

 private:
  bool authenticate(Exchange& exchange);
  bool authorize(Exchange& exchange);
  bool rate_limit(Exchange& exchange);
  bool route(Exchange& exchange);

  const ApiServerOptions& options_;
  ControlApi& api_;
  std::mutex tokens_mu_;
  std::shared_ptr<const TokenStore> tokens_;
  RateLimiter limiter_;
  AuditLog audit_;
  ApiStats stats_;
};

}  // namespace axon::controlplane::api
