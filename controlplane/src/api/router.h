// The REST routes: one table of (method, OpenAPI path template, handler), filled by one
// registration function per resource family (handlers/*.cc), and the matcher that maps a
// request path onto it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "axon/controlplane/model.h"

#include "api/http.h"

namespace axon::controlplane::api {

// The API layer's own counters, exported on /metrics beside the ControlApi's families.
class ApiStats {
 public:
  void count_request(const std::string& method, int status);
  void count_auth_failure(const char* reason);
  void count_rate_limited();
  void count_connection(bool accepted);
  void count_tls_handshake_failure();
  std::string render() const;  // Prometheus text

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, std::uint64_t> requests_;  // (method, status)
  std::map<std::string, std::uint64_t> auth_failures_;             // by reason
  std::uint64_t rate_limited_ = 0;
  std::uint64_t connections_accepted_ = 0;
  std::uint64_t connections_refused_ = 0;
  std::uint64_t tls_handshake_failures_ = 0;
};

// What a handler gets: the daemon's operations and the API layer's own state.
struct HandlerContext {
  ControlApi& api;
  ApiStats& stats;
};

// One routed request.
struct Call {
  std::map<std::string, std::string> params;  // from {name} segments, percent-decoded
  std::map<std::string, std::string> query;
  std::string body;
  std::optional<std::string> if_match;  // the If-Match header, as sent
};

using Handler = std::function<http::Response(HandlerContext&, const Call&)>;

struct RouteDef {
  std::string method;
  std::string path;  // OpenAPI template: /v1/agents/{name}
  std::vector<std::string> query_params;
  Handler handler;
  bool needs_auth = true;  // false: /v1/health (probes carry no token) and the /dashboard page
};

class Router {
 public:
  void add(RouteDef def) { routes_.push_back(std::move(def)); }

  struct Match {
    const RouteDef* route = nullptr;  // null: no route for this method
    std::map<std::string, std::string> params;
    std::vector<std::string> allowed;  // methods that exist for this path (for 405)
  };
  Match match(const std::string& method, const std::string& raw_path) const;
  const std::vector<RouteDef>& routes() const { return routes_; }

 private:
  std::vector<RouteDef> routes_;
};

// The routes of every resource family (handlers/*.cc), built once.
const Router& router();

namespace handlers {
void add_system(Router& r);     // /v1/health, /v1/status
void add_agents(Router& r);     // /v1/agents...
void add_workers(Router& r);    // /v1/workers...
void add_tenants(Router& r);    // /v1/tenants...
void add_routes(Router& r);     // /v1/routes
void add_cache(Router& r);      // /v1/cache, /v1/agents/{name}/cache (the response cache)
void add_metrics(Router& r);    // /metrics
void add_tuning(Router& r);     // /v1/tuning... (host tuning service)
void add_top(Router& r);        // /v1/top (live counters)
void add_fleet(Router& r);      // /v1/fleet (members in etcd, this appliance's view)
void add_traces(Router& r);     // /v1/traces... (sampled traces, JSON or Perfetto)
void add_dashboard(Router& r);  // /dashboard (the web page; no token, its data fetches need one)
}  // namespace handlers

}  // namespace axon::controlplane::api
