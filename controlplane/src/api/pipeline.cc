// The request pipeline (see pipeline.h): authenticate, authorize, rate limit, route, handle,
// audit. Each step is a small function that either lets the exchange go on or writes the
// refusal into it.
#include "api/pipeline.h"

#include <fcntl.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "axon/common/log.h"

#include "api/handlers/respond.h"

namespace axon::controlplane::api {
namespace {

constexpr const char* kLog = "api";
using handlers::error_response;
using nlohmann::json;

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

http::Response unauthorized(const std::string& message, const std::string& challenge) {
  http::Response r = error_response(401, message);
  r.headers.emplace_back("WWW-Authenticate", challenge);
  return r;
}

}  // namespace

// --- rate limiter ------------------------------------------------------------------------

std::uint32_t RateLimiter::take(const std::string& identity) {
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

// --- audit log ----------------------------------------------------------------------------

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

Result<Ok, ApiServerError> AuditLog::open(const std::string& path) {
  path_ = path;
  if (path.empty()) return Ok{};
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    return make_error(ApiServerError::invalid_argument, "cannot open audit log " + path + ": " + std::strerror(errno));
  }
  return Ok{};
}

void AuditLog::write(const Exchange& x) {
  const int status = x.response.status;
  json line{{"time", utc_now_iso8601()},  {"identity", x.identity}, {"remote", x.peer->remote},
            {"method", x.request.method}, {"path", x.request.path}, {"status", status}};
  if (status < 400) {
    line["result"] = "ok";
  } else {
    line["result"] = "error";
    std::string error;
    try {
      error = json::parse(x.response.body).value("error", "");
    } catch (const std::exception&) {
      error = "status " + std::to_string(status);
    }
    line["error"] = error;
  }
  // error_handler::replace: a path with invalid UTF-8 must not stop the audit.
  const std::string text = line.dump(-1, ' ', false, json::error_handler_t::replace);
  if (fd_ < 0) {
    AXON_LOG_INFO("audit", "%s", text.c_str());
    return;
  }
  const std::string record = text + "\n";
  std::lock_guard lock(mu_);
  if (::write(fd_, record.data(), record.size()) != static_cast<ssize_t>(record.size())) {
    AXON_LOG_ERROR(kLog, "cannot write audit log %s: %s; entry: %s", path_.c_str(), std::strerror(errno), text.c_str());
  }
}

// --- pipeline -----------------------------------------------------------------------------

Pipeline::Pipeline(const ApiServerOptions& options, ControlApi& api)
    : options_(options),
      api_(api),
      tokens_(std::make_shared<TokenStore>()),
      limiter_(options.rate_per_second, options.rate_burst) {}

Result<Ok, ApiServerError> Pipeline::reload_tokens() {
  if (options_.tokens_file.empty()) return Ok{};
  auto loaded = TokenStore::load(options_.tokens_file);
  if (!loaded) return loaded.error();
  auto fresh = std::make_shared<const TokenStore>(std::move(loaded.value()));
  AXON_LOG_INFO(kLog, "loaded %zu API token(s) from %s", fresh->size(), options_.tokens_file.c_str());
  std::lock_guard lock(tokens_mu_);
  tokens_ = std::move(fresh);
  return Ok{};
}

bool Pipeline::admit(Exchange& x) {
  const auto m = router().match(x.request.method, x.request.path);
  x.route = m.route;
  x.call.params = m.params;
  if (!(x.route && !x.route->needs_auth) && !authenticate(x)) return false;
  if (!x.route) {
    if (m.allowed.empty()) {
      x.response = error_response(404, "no route " + x.request.method + " " + x.request.path);
      return false;
    }
    std::string allow;
    for (const auto& method : m.allowed) allow += (allow.empty() ? "" : ", ") + method;
    x.response =
        error_response(405, "method " + x.request.method + " not allowed on " + x.request.path + "; allowed: " + allow);
    x.response.headers.emplace_back("Allow", allow);
    return false;
  }
  return authorize(x) && rate_limit(x) && route(x);
}

bool Pipeline::authenticate(Exchange& x) {
  if (x.peer->is_unix) {
    x.identity = "uid:" + std::to_string(x.peer->uid);
    if (x.peer->uid != 0) {
      stats_.count_auth_failure("unix_not_root");
      x.response = error_response(403, "only root (uid 0) may use the unix socket; use HTTPS with a token");
      return false;
    }
    x.role = Role::admin;
    return true;
  }
  const auto& auth = x.request.authorization;
  if (!auth || auth->size() < 7 || strncasecmp(auth->c_str(), "Bearer ", 7) != 0) {
    stats_.count_auth_failure("missing");
    x.response = unauthorized("missing bearer token: send 'Authorization: Bearer <token>'", "Bearer realm=\"axon\"");
    return false;
  }
  std::shared_ptr<const TokenStore> store;
  {
    std::lock_guard lock(tokens_mu_);
    store = tokens_;
  }
  const auto who = store->lookup(auth->substr(7));
  if (!who) {
    stats_.count_auth_failure("invalid");
    x.response = unauthorized("invalid bearer token", "Bearer realm=\"axon\", error=\"invalid_token\"");
    return false;
  }
  x.identity = who->name;
  x.role = who->role;
  return true;
}

bool Pipeline::authorize(Exchange& x) {
  if (!is_mutating(x.request.method) || x.role == Role::admin) return true;
  stats_.count_auth_failure("forbidden");
  x.response =
      error_response(403, "token '" + x.identity + "' has the reader role; " + x.request.method + " needs admin");
  return false;
}

bool Pipeline::rate_limit(Exchange& x) {
  if (!x.route->needs_auth) return true;  // health probes are never limited
  const std::uint32_t retry = limiter_.take(x.identity);
  if (retry == 0) return true;
  stats_.count_rate_limited();
  x.response =
      error_response(429, "rate limit exceeded for '" + x.identity + "'; retry in " + std::to_string(retry) + " s");
  x.response.headers.emplace_back("Retry-After", std::to_string(retry));
  return false;
}

bool Pipeline::route(Exchange& x) {
  if (!http::parse_query(x.request.query, x.call.query)) {
    x.response = error_response(400, "malformed query string");
    return false;
  }
  for (const auto& [key, value] : x.call.query) {
    const auto& allowed = x.route->query_params;
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      x.response =
          error_response(400, "unknown query parameter '" + key + "' for " + x.route->method + " " + x.route->path);
      return false;
    }
  }
  return true;
}

void Pipeline::handle(Exchange& x) {
  x.call.body = std::move(x.request.body);
  x.call.if_match = x.request.if_match;
  HandlerContext ctx{api_, stats_};
  // ControlApi reports errors as values; this is only the backstop for what the standard
  // library or nlohmann-json throw (std::bad_alloc, ...), so the client still gets a 500.
  try {
    x.response = x.route->handler(ctx, x.call);
  } catch (const std::exception& e) {
    AXON_LOG_ERROR(kLog, "%s %s failed: %s", x.request.method.c_str(), x.request.path.c_str(), e.what());
    x.response = error_response(500, std::string("internal error: ") + e.what());
  }
}

void Pipeline::finish(const Exchange& x) {
  stats_.count_request(x.request.method, x.response.status);
  // Changes, attempted changes and requests too malformed to route are audited; reads are not.
  if (x.refused_before_routing || is_mutating(x.request.method)) audit_.write(x);
}

}  // namespace axon::controlplane::api
