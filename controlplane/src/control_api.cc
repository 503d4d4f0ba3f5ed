// ControlPlane's ControlApi: the REST resources' operations over the registry, the pools
// and the data plane link, each under the daemon's one lock (see model.h for the contract).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "axon/common/log.h"
#include "axon/controlplane/api_server.h"

#include "api/json.h"
#include "control_plane.h"
#include "files.h"
#include "metrics_exporter.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "controlplane";
constexpr const char* kDataplaneMember = "axon-dataplane";
namespace dpc = dataplane::control;
constexpr const char* kVersion = "0.2.0";

std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

ApiResult<AgentSpec> scaled_spec(AgentSpec spec, const ScaleRequest& request, const ControlplaneConfig& config) {
  if (!request.min && !request.max) {
    return api_error(ApiErrorCode::invalid_argument, "scale needs 'min', 'max' or both");
  }
  if (request.min) spec.pool.min = *request.min;
  if (request.max) spec.pool.max = *request.max;
  if (request.min && !request.max && spec.pool.max < spec.pool.min) spec.pool.max = spec.pool.min;
  if (request.max && !request.min && spec.pool.min > spec.pool.max) spec.pool.min = spec.pool.max;
  if (auto why = check_agent(spec, config); !why.empty()) return api_error(ApiErrorCode::invalid_argument, why);
  return spec;
}

// ---- ControlApi ----------------------------------------------------------------------------

ApiResult<SystemStatus> ControlPlane::status() {
  return system_status();
}

SystemStatus ControlPlane::system_status() {
  std::lock_guard lock(mutex_);
  SystemStatus s;
  s.version = kVersion;
  s.uptime_ms = unix_ms(std::chrono::system_clock::now()) - unix_ms(started_at_);
  s.cgroup_mode = cgroups_ ? to_string(cgroups_->mode()) : "disabled";
  link_.fill(s.dataplane);
  s.agents = 0;
  for (const auto& [name, a] : registry_.agents()) {
    auto pool = pools_.find(name);
    if (pool != pools_.end() && pool->second.deleting) continue;
    ++s.agents;
    AgentStatus as = agent_status(a);
    s.workers += as.workers;
    s.warm += as.warm;
    s.breakers_open += as.breaker == BreakerState::open ? 1 : 0;
  }
  s.tenants = std::uint32_t(registry_.tenants().size());
  return s;
}

ApiResult<std::vector<AgentStatus>> ControlPlane::list_agents() {
  std::lock_guard lock(mutex_);
  std::vector<AgentStatus> out;
  for (const auto& [name, spec] : registry_.agents()) {
    auto pool = pools_.find(name);
    if (pool != pools_.end() && pool->second.deleting) continue;
    out.push_back(agent_status(spec));
  }
  return out;
}

ApiResult<AgentStatus> ControlPlane::get_agent(const std::string& name) {
  std::lock_guard lock(mutex_);
  const auto spec = find_agent(name);
  if (!spec) return spec.error();
  return agent_status(*spec.value());
}

ApiResult<AgentStatus> ControlPlane::local_create_agent(const AgentSpec& spec) {
  std::lock_guard lock(mutex_);
  auto pool_it = pools_.find(spec.name);
  if (pool_it != pools_.end() && pool_it->second.deleting) {
    return api_error(ApiErrorCode::conflict, "agent '" + spec.name +
                                                 "' is still being deleted (draining its "
                                                 "workers); retry in a few seconds");
  }
  if (auto valid = registry_.validate_agent(spec, nullptr); !valid) return valid.error();
  if (auto cgroup = ensure_cgroup(spec); !cgroup) return api_error(ApiErrorCode::unavailable, cgroup.message());
  registry_.set_agent(spec);
  Pool& pool = pools_[spec.name];
  pool = Pool{};
  pool.target = spec.pool.min;
  autoscaler_.forget(spec.name);  // a new agent of an old name starts with no history
  tables_dirty_ = true;
  const auto saved = registry_.save();
  reconcile_pools();
  if (!saved) return saved.error();
  AXON_LOG_INFO(kLog, "agent %s registered (id %u, tenant %u, pool %u..%u)", spec.name.c_str(), spec.id, spec.tenant,
                spec.pool.min, spec.pool.max);
  return agent_status(spec);
}

ApiResult<AgentStatus> ControlPlane::local_replace_agent(const std::string& name, const AgentSpec& spec,
                                                         const Precondition& pre) {
  std::lock_guard lock(mutex_);
  const auto found = find_agent(name);
  if (!found) return found.error();
  if (auto held = registry_.check(pre, Resource::agent, name, "agent '" + name + "'"); !held) return held.error();
  const AgentSpec old = *found.value();
  if (spec.name != name) {
    return api_error(ApiErrorCode::invalid_argument, "the body's name '" + spec.name + "' differs from the path's '" +
                                                         name + "'; agents cannot be renamed");
  }
  if (auto valid = registry_.validate_agent(spec, &name); !valid) return valid.error();
  if (auto cgroup = ensure_cgroup(spec); !cgroup) return api_error(ApiErrorCode::unavailable, cgroup.message());
  registry_.set_agent(spec);
  Pool& pool = pools_[name];
  if (auto bounded = autoscaler_.bound(name, pool_sample(spec, pool, Clock::now()))) apply_scale(name, pool, *bounded);
  bool process_changed = old.command != spec.command || old.env != spec.env || old.user != spec.user ||
                         old.cgroup_profile != spec.cgroup_profile || old.priority != spec.priority ||
                         old.tenant != spec.tenant;
  if (process_changed) {
    // A rolling replacement: the old workers drain while reconcile starts new ones with
    // the new spec, so the agent never drops to zero workers.
    for (auto& [id, w] : workers_) {
      if (w.agent == name) begin_drain(w);
    }
  }
  tables_dirty_ = true;
  const auto saved = registry_.save();
  reconcile_pools();
  if (!saved) return saved.error();
  return agent_status(spec);
}

ApiResult<Ok> ControlPlane::local_delete_agent(const std::string& name, const Precondition& pre) {
  std::lock_guard lock(mutex_);
  const auto found = find_agent(name);
  if (!found) return found.error();
  if (auto held = registry_.check(pre, Resource::agent, name, "agent '" + name + "'"); !held) return held.error();
  std::string cgroup = cgroups_ ? cgroup_of(*found.value()) : std::string();
  registry_.erase_agent(name);
  Pool& pool = pools_[name];
  pool.deleting = true;
  pool.target = 0;
  pool.cgroup = cgroup;
  for (auto& [id, w] : workers_) {
    if (w.agent == name) begin_drain(w);
  }
  tables_dirty_ = true;
  AXON_LOG_INFO(kLog, "agent %s deleted; draining its workers", name.c_str());
  return registry_.save();
}

ApiResult<AgentStatus> ControlPlane::local_scale_agent(const std::string& name, const ScaleRequest& request,
                                                       const Precondition& pre) {
  std::lock_guard lock(mutex_);
  const auto found = find_agent(name);
  if (!found) return found.error();
  if (auto held = registry_.check(pre, Resource::agent, name, "agent '" + name + "'"); !held) return held.error();
  auto scaled = scaled_spec(*found.value(), request, config_);
  if (!scaled) return scaled.error();
  const AgentSpec& spec = scaled.value();
  registry_.set_agent(spec);
  Pool& pool = pools_[name];
  // New bounds are followed at once, and recorded as the autoscaler's decision.
  if (auto bounded = autoscaler_.bound(name, pool_sample(spec, pool, Clock::now()))) apply_scale(name, pool, *bounded);
  const auto saved = registry_.save();
  reconcile_pools();
  if (!saved) return saved.error();
  AXON_LOG_INFO(kLog, "agent %s scaled to %u..%u (target %u)", name.c_str(), spec.pool.min, spec.pool.max, pool.target);
  return agent_status(spec);
}

ApiResult<AgentStatus> ControlPlane::reset_breaker(const std::string& name) {
  std::lock_guard lock(mutex_);
  const auto spec = find_agent(name);
  if (!spec) return spec.error();
  supervisor_->reset_breaker(name);
  return agent_status(*spec.value());
}

ApiResult<std::vector<WorkerInfo>> ControlPlane::list_workers(const std::optional<std::string>& agent) {
  std::lock_guard lock(mutex_);
  if (agent) {
    if (const auto found = find_agent(*agent); !found) return found.error();
  }
  std::vector<WorkerInfo> out;
  for (const auto& [id, w] : workers_) {
    if (!agent || w.agent == *agent) out.push_back(worker_info(w));
  }
  return out;
}

ApiResult<WorkerInfo> ControlPlane::drain_worker(const std::string& id) {
  std::lock_guard lock(mutex_);
  const auto found = find_worker(id);
  if (!found) return found.error();
  Worker& w = *found.value();
  begin_drain(w);
  // A drained worker leaves the pool; reconcile keeps `min` warm by starting another.
  return worker_info(w);
}

ApiResult<WorkerInfo> ControlPlane::kill_worker(const std::string& id) {
  std::lock_guard lock(mutex_);
  const auto found = find_worker(id);
  if (!found) return found.error();
  Worker& w = *found.value();
  if (!supervisor_->kill(id)) {
    return api_error(ApiErrorCode::conflict, "worker '" + id + "' has no running process (it is in backoff)");
  }
  ++replacements_["requested"];
  AXON_LOG_INFO(kLog, "worker %s killed on request; the pool respawns it", id.c_str());
  return worker_info(w);
}

ApiResult<std::vector<TenantSpec>> ControlPlane::list_tenants() {
  std::lock_guard lock(mutex_);
  std::vector<TenantSpec> out;
  for (const auto& [id, t] : registry_.tenants()) out.push_back(t);
  return out;
}

ApiResult<TenantSpec> ControlPlane::get_tenant(std::uint32_t id) {
  std::lock_guard lock(mutex_);
  auto it = registry_.tenants().find(id);
  if (it == registry_.tenants().end())
    return api_error(ApiErrorCode::not_found, "no tenant with id " + std::to_string(id));
  return it->second;
}

ApiResult<TenantSpec> ControlPlane::local_put_tenant(std::uint32_t id, const TenantSpec& spec,
                                                     const Precondition& pre) {
  std::lock_guard lock(mutex_);
  const std::string key = std::to_string(id);
  if (auto held = registry_.check(pre, Resource::tenant, key, "tenant " + key); !held) return held.error();
  auto put = registry_.put_tenant(id, spec);
  tables_dirty_ = true;
  return put;
}

ApiResult<Ok> ControlPlane::local_delete_tenant(std::uint32_t id, const Precondition& pre) {
  std::lock_guard lock(mutex_);
  const std::string key = std::to_string(id);
  if (registry_.tenants().contains(id)) {
    if (auto held = registry_.check(pre, Resource::tenant, key, "tenant " + key); !held) return held.error();
  }
  auto deleted = registry_.delete_tenant(id);
  tables_dirty_ = true;
  return deleted;
}

ApiResult<std::vector<RouteInfo>> ControlPlane::list_routes() {
  std::lock_guard lock(mutex_);
  std::vector<RouteInfo> out;
  for (const auto& entry : build_tables().agents) {
    RouteInfo r{entry.id, entry.tenant, entry.name, {}, entry.scheduling};
    for (const auto& slot : entry.workers) {
      auto s = link_.slots().find(slot);
      if (s != link_.slots().end() && s->second.state == "alive") r.workers.push_back(slot);
    }
    out.push_back(std::move(r));
  }
  return out;
}

ApiResult<std::string> ControlPlane::metrics() {
  std::lock_guard lock(mutex_);
  MetricsSnapshot m;
  m.version = kVersion;
  m.uptime_seconds = double(unix_ms(std::chrono::system_clock::now()) - unix_ms(started_at_)) / 1000.0;
  m.dataplane_up = link_.connected();
  m.dataplane_restarts_seen = link_.restarts_seen();
  m.table_pushes_rejected = link_.rejected_pushes();
  m.spawn_failures = spawn_failures_;
  m.workers_adopted = adopted_;
  m.worker_replacements = replacements_;
  m.tenants = registry_.tenants().size();
  for (const auto& [name, spec] : registry_.agents()) {
    m.agents.push_back(agent_status(spec));
    m.scaling.push_back(scaling_status(spec));
  }
  m.scale_events = scale_events_;
  for (const auto& [id, w] : workers_) m.workers.push_back(worker_info(w));
  m.stats = link_.stats();
  std::string text = export_metrics(m);
  if (tuning_) text += tuning_->metrics();
  if (fleet_) {
    MetricsWriter w;
    w.family("axon_fleet_config_apply_failures_total", "counter",
             "Changes of the fleet's configuration in etcd this appliance refused (see the log)");
    w.sample(double(fleet_apply_failures_));
    text += fleet_->metrics() + w.str();
  }
  if (traces_) text += traces_->metrics();
  if (exporter_) text += exporter_->metrics();
  return text;
}

}  // namespace axon::controlplane
