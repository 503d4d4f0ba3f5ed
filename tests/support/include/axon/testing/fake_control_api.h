// The tests' one fake of the control API (issue 12 item 7): an in-memory ControlApi for tests
// that exercise the REST layer or axonctl without a daemon. Header only; target
// axon::test_support.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "axon/controlplane/api_server.h"
#include "axon/controlplane/model.h"

namespace axon::controlplane::testing {

// The one in-memory ControlApi of the tests (REST server tests, API survival tests, axonctl
// end to end), with the same error codes and messages as the daemon's contract in model.h.
// Creating an agent starts pool.min "warm" workers <name>-<i> on slots <name>-slot<i> with
// pids 5000+i; the data plane is a connected xdp instance with fixed figures.
class FakeControlApi : public ControlApi {
 public:
  explicit FakeControlApi(std::string version = "test") : version_(std::move(version)) {}

  // A tenant that exists from the start (axonctl's tests begin with one).
  void seed_tenant(const TenantSpec& tenant) {
    std::lock_guard lock(mu_);
    tenants_[tenant.id] = tenant;
  }

  ApiResult<SystemStatus> status() override {
    std::lock_guard lock(mu_);
    SystemStatus s;
    s.version = version_;
    s.uptime_ms = 3723000;
    s.cgroup_mode = "v1";
    s.dataplane.connected = true;
    s.dataplane.pid = 4242;
    s.dataplane.backend = "xdp";
    s.dataplane.mode = "copy";
    s.dataplane.interface = "veth-test";
    s.dataplane.ready = true;
    s.dataplane.heartbeat_age_ms = 40;
    s.dataplane.table_version = 3;
    s.dataplane.requests = 990;
    s.agents = static_cast<std::uint32_t>(agents_.size());
    s.tenants = static_cast<std::uint32_t>(tenants_.size());
    s.workers = static_cast<std::uint32_t>(workers_.size());
    s.warm = s.workers;
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
    for (std::uint32_t i = 0; i < spec.pool.min; ++i) {
      WorkerInfo w;
      w.id = spec.name + "-" + std::to_string(i);
      w.agent = spec.name;
      w.slot = spec.name + "-slot" + std::to_string(i);
      w.pid = 5000 + static_cast<std::int32_t>(i);
      w.state = WorkerState::warm;
      workers_[w.id] = w;
    }
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
    if (pool.min > pool.max) return api_error(ApiErrorCode::invalid_argument, "min > max");
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
  // The pool at its spec's bounds, with one recorded decision: what the REST layer shows.
  ApiResult<ScalingStatus> get_scaling(const std::string& name) override {
    std::lock_guard lock(mu_);
    auto* s = find_agent(name);
    if (s == nullptr) return no_agent(name);
    ScalingStatus out;
    out.agent = name;
    out.min = s->spec.pool.min;
    out.max = s->spec.pool.max;
    out.target = s->spec.pool.min + 1;
    out.queue_delay_target_us = 1000;
    out.queue_delay_us = 5400;
    out.delay_source = "estimated";
    out.decisions.push_back(
        ScaleEvent{1'700'000'000'000, out.min, out.target, "up", "queue_delay", 5400, 1000, "estimated", "", "grew"});
    return out;
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
    ++w->restarts;
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
    for (const auto& [name, a] : agents_) {
      if (a.spec.tenant == id) {
        return api_error(ApiErrorCode::conflict, "tenant " + std::to_string(id) + " is used by agent " + name);
      }
    }
    if (!tenants_.count(id)) return api_error(ApiErrorCode::not_found, "no tenant " + std::to_string(id));
    tenants_.erase(id);
    return Ok{};
  }
  ApiResult<std::vector<RouteInfo>> list_routes() override {
    std::lock_guard lock(mu_);
    std::vector<RouteInfo> out;
    for (const auto& [name, a] : agents_) {
      RouteInfo r{a.spec.id, a.spec.tenant, name, {}};
      for (const auto& [id, w] : workers_) {
        if (w.agent == name) r.workers.push_back(w.slot);
      }
      out.push_back(std::move(r));
    }
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
  std::string version_;
  std::mutex mu_;
  std::map<std::string, AgentStatus> agents_;
  std::map<std::string, WorkerInfo> workers_;
  std::map<std::uint32_t, TenantSpec> tenants_;
};

}  // namespace axon::controlplane::testing
