// Route matching and the API layer's counters (see router.h).
#include "api/router.h"

#include "axon/controlplane/api_server.h"

namespace axon::controlplane::api {
namespace {

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

}  // namespace

Router::Match Router::match(const std::string& method, const std::string& raw_path) const {
  Match m;
  const auto raw = split_path(raw_path);
  for (const auto& def : routes_) {
    std::map<std::string, std::string> params;
    if (!match_template(split_path(def.path), raw, params)) continue;
    if (def.method == method) {
      m.route = &def;
      m.params = std::move(params);
      return m;
    }
    m.allowed.push_back(def.method);
  }
  return m;
}

const Router& router() {
  static const Router table = [] {
    Router r;
    handlers::add_system(r);
    handlers::add_agents(r);
    handlers::add_workers(r);
    handlers::add_tenants(r);
    handlers::add_routes(r);
    handlers::add_cache(r);
    handlers::add_metrics(r);
    handlers::add_tuning(r);
    handlers::add_top(r);
    handlers::add_fleet(r);
    handlers::add_traces(r);
    handlers::add_dashboard(r);
    return r;
  }();
  return table;
}

void ApiStats::count_request(const std::string& method, int status) {
  const std::string label =
      method == "GET" || method == "POST" || method == "PUT" || method == "DELETE" ? method : "other";
  std::lock_guard lock(mu_);
  ++requests_[{label, status}];
}

void ApiStats::count_auth_failure(const char* reason) {
  std::lock_guard lock(mu_);
  ++auth_failures_[reason];
}

void ApiStats::count_rate_limited() {
  std::lock_guard lock(mu_);
  ++rate_limited_;
}

void ApiStats::count_connection(bool accepted) {
  std::lock_guard lock(mu_);
  ++(accepted ? connections_accepted_ : connections_refused_);
}

void ApiStats::count_tls_handshake_failure() {
  std::lock_guard lock(mu_);
  ++tls_handshake_failures_;
}

std::string ApiStats::render() const {
  MetricsWriter w;
  std::lock_guard lock(mu_);
  w.family("axon_api_requests_total", "counter", "API requests answered, by method and HTTP status.");
  for (const auto& [key, count] : requests_) {
    w.sample({{"method", key.first}, {"code", std::to_string(key.second)}}, static_cast<double>(count));
  }
  w.family("axon_api_auth_failures_total", "counter",
           "Requests refused by authentication or authorisation (missing, invalid, forbidden, unix_not_root).");
  for (const char* reason : {"missing", "invalid", "forbidden", "unix_not_root"}) {
    const auto it = auth_failures_.find(reason);
    w.sample({{"reason", reason}}, static_cast<double>(it == auth_failures_.end() ? 0 : it->second));
  }
  w.family("axon_api_rate_limited_total", "counter", "Requests refused with 429 by the per-identity rate limit.");
  w.sample(static_cast<double>(rate_limited_));
  w.family("axon_api_connections_accepted_total", "counter", "Connections accepted by the API listeners.");
  w.sample(static_cast<double>(connections_accepted_));
  w.family("axon_api_connections_refused_total", "counter",
           "Connections closed at once: the connection cap was reached.");
  w.sample(static_cast<double>(connections_refused_));
  w.family("axon_api_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed or timed out (old protocol, no or bad client certificate, not TLS, silent).");
  w.sample(static_cast<double>(tls_handshake_failures_));
  return w.str();
}

}  // namespace axon::controlplane::api
