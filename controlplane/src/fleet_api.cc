// ControlPlane's side of the fleet (docs/fleet.md): the membership and the local view it
// publishes, GET /v1/fleet, the REST writes that go to etcd in a fleet, and the fleet's
// configuration applied here through the same local_* writes REST uses without a fleet.
#include <cstdlib>
#include <set>

#include "axon/common/log.h"

#include "api/json.h"
#include "control_plane.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "fleet";
using Kind = FleetConfig::Change::Kind;

}  // namespace

Result<Ok, DaemonError> ControlPlane::start_fleet() {
  if (!config_.fleet.enabled()) return Ok{};
  auto fleet = Fleet::create(config_.fleet, config_.api, [this] { return fleet_local(); });
  if (!fleet) return fleet.error();
  fleet_ = std::move(fleet).value();
  fleet_config_ = std::make_unique<FleetConfig>(
      *fleet_,
      [this](const std::vector<FleetConfig::Change>& changes, bool full) { apply_fleet_config(changes, full); },
      [this] { return fleet_seed(); });
  fleet_->start();
  fleet_config_->start();
  return Ok{};
}

Fleet::Local ControlPlane::fleet_local() {
  std::lock_guard lock(mutex_);
  Fleet::Local local;
  local.health = link_.connected() ? "ok" : "degraded";
  for (const auto& [name, spec] : registry_.agents()) {
    const auto pool = pools_.find(name);
    if (pool != pools_.end() && pool->second.deleting) continue;
    local.workers += agent_status(spec).warm;
  }
  local.lcores = link_.connected() && link_.stats() != nullptr ? link_.stats()->lcore_count() : 0;
  return local;
}

ApiResult<std::string> ControlPlane::fleet() {
  // Not under mutex_: the view reads etcd (bounded by [fleet] request_timeout_ms).
  if (!fleet_) return ControlApi::fleet();
  return fleet_->view_json();
}

std::vector<std::pair<std::string, std::string>> ControlPlane::fleet_seed() {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [id, t] : registry_.tenants())
    out.emplace_back("tenants/" + std::to_string(id), json_io::to_json(t).dump());
  for (const auto& [name, a] : registry_.agents()) out.emplace_back("agents/" + name, json_io::to_json(a).dump());
  return out;
}

// ---- the fleet's configuration, applied here -------------------------------------------------

void ControlPlane::apply_fleet_config(const std::vector<FleetConfig::Change>& changes, bool full) {
  // Tenants before the agents that use them; deleted agents before their tenants.
  std::set<std::uint32_t> tenants_seen;
  std::set<std::string> agents_seen;
  auto refused = [this](const FleetConfig::Change& c, const std::string& why) {
    std::lock_guard lock(mutex_);
    ++fleet_apply_failures_;
    AXON_LOG_WARN(kLog, "cannot apply %s %s from etcd: %s", c.kind == Kind::agent ? "agent" : "tenant", c.name.c_str(),
                  why.c_str());
  };
  for (const auto& c : changes) {
    if (c.kind != Kind::tenant || c.deleted) continue;
    const auto body = json_io::parse_body(c.value);
    const std::uint32_t id = static_cast<std::uint32_t>(std::strtoul(c.name.c_str(), nullptr, 10));
    auto spec = body ? json_io::tenant_spec_from_json(*body, id) : ApiResult<TenantSpec>(body.error());
    if (!spec) {
      refused(c, spec.error().message);
      continue;
    }
    tenants_seen.insert(id);
    if (auto put = local_put_tenant(id, *spec); !put) refused(c, put.error().message);
  }
  for (const auto& c : changes) {
    if (c.kind != Kind::agent || c.deleted) continue;
    const auto body = json_io::parse_body(c.value);
    auto spec = body ? json_io::agent_spec_from_json(*body, c.name) : ApiResult<AgentSpec>(body.error());
    if (!spec) {
      refused(c, spec.error().message);
      continue;
    }
    agents_seen.insert(c.name);
    bool exists = false, same = false;
    {
      std::lock_guard lock(mutex_);
      const auto found = find_agent(c.name);
      exists = found.ok();
      same = exists && json_io::to_json(*found.value()) == json_io::to_json(*spec);
    }
    if (same) continue;
    auto done = exists ? local_replace_agent(c.name, *spec) : local_create_agent(*spec);
    if (!done) refused(c, done.error().message);
  }
  std::vector<std::string> agents_gone;
  std::vector<std::uint32_t> tenants_gone;
  for (const auto& c : changes) {
    if (!c.deleted) continue;
    if (c.kind == Kind::agent) agents_gone.push_back(c.name);
    if (c.kind == Kind::tenant)
      tenants_gone.push_back(static_cast<std::uint32_t>(std::strtoul(c.name.c_str(), nullptr, 10)));
  }
  if (full) {
    // What etcd does not have is not the fleet's configuration.
    std::lock_guard lock(mutex_);
    for (const auto& [name, spec] : registry_.agents()) {
      if (!agents_seen.contains(name)) agents_gone.push_back(name);
    }
    for (const auto& [id, spec] : registry_.tenants()) {
      if (!tenants_seen.contains(id)) tenants_gone.push_back(id);
    }
  }
  for (const auto& name : agents_gone) {
    if (auto gone = local_delete_agent(name); !gone && gone.error().code != ApiErrorCode::not_found) {
      refused(FleetConfig::Change{Kind::agent, name, true, ""}, gone.error().message);
    }
  }
  for (const auto id : tenants_gone) {
    if (auto gone = local_delete_tenant(id); !gone && gone.error().code != ApiErrorCode::not_found) {
      refused(FleetConfig::Change{Kind::tenant, std::to_string(id), true, ""}, gone.error().message);
    }
  }
}

// ---- REST writes: to etcd in a fleet -----------------------------------------------------------

namespace {

// How long a REST write waits for its own change to come back through the watch.
std::chrono::milliseconds apply_wait(const FleetSettings& fleet) {
  return fleet.request_timeout * 2;
}

}  // namespace

ApiResult<AgentStatus> ControlPlane::fleet_put_agent(const AgentSpec& spec, bool create) {
  auto revision = fleet_config_->put(Kind::agent, spec.name, json_io::to_json(spec).dump(), create);
  if (!revision) return revision.error();
  if (!fleet_config_->wait_applied(*revision, apply_wait(config_.fleet))) {
    return api_error(ApiErrorCode::unavailable, "the change is in etcd (revision " + std::to_string(*revision) +
                                                    ") but not applied here yet; GET it again shortly");
  }
  return get_agent(spec.name);
}

ApiResult<AgentStatus> ControlPlane::create_agent(const AgentSpec& spec) {
  if (!fleet_config_) return local_create_agent(spec);
  {
    std::lock_guard lock(mutex_);
    if (auto valid = registry_.validate_agent(spec, nullptr); !valid) return valid.error();
  }
  return fleet_put_agent(spec, true);
}

ApiResult<AgentStatus> ControlPlane::replace_agent(const std::string& name, const AgentSpec& spec) {
  if (!fleet_config_) return local_replace_agent(name, spec);
  {
    std::lock_guard lock(mutex_);
    if (const auto found = find_agent(name); !found) return found.error();
    if (spec.name != name) {
      return api_error(ApiErrorCode::invalid_argument, "the body's name '" + spec.name + "' differs from the path's '" +
                                                           name + "'; agents cannot be renamed");
    }
    if (auto valid = registry_.validate_agent(spec, &name); !valid) return valid.error();
  }
  return fleet_put_agent(spec, false);
}

ApiResult<AgentStatus> ControlPlane::scale_agent(const std::string& name, const ScaleRequest& request) {
  if (!fleet_config_) return local_scale_agent(name, request);
  AgentSpec spec;
  {
    std::lock_guard lock(mutex_);
    const auto found = find_agent(name);
    if (!found) return found.error();
    auto scaled = scaled_spec(*found.value(), request, config_);
    if (!scaled) return scaled.error();
    spec = scaled.value();
  }
  return fleet_put_agent(spec, false);
}

ApiResult<Ok> ControlPlane::delete_agent(const std::string& name) {
  if (!fleet_config_) return local_delete_agent(name);
  {
    std::lock_guard lock(mutex_);
    if (const auto found = find_agent(name); !found) return found.error();
  }
  auto revision = fleet_config_->remove(Kind::agent, name);
  if (!revision) return revision.error();
  (void)fleet_config_->wait_applied(*revision, apply_wait(config_.fleet));
  return Ok{};
}

ApiResult<TenantSpec> ControlPlane::put_tenant(std::uint32_t id, const TenantSpec& spec) {
  if (!fleet_config_) return local_put_tenant(id, spec);
  TenantSpec t = spec;
  if (t.id != 0 && t.id != id) {
    return api_error(ApiErrorCode::invalid_argument,
                     "the body's id " + std::to_string(t.id) + " differs from the path's " + std::to_string(id));
  }
  t.id = id;
  if (auto why = check_tenant(t); !why.empty()) return api_error(ApiErrorCode::invalid_argument, why);
  auto revision = fleet_config_->put(Kind::tenant, std::to_string(id), json_io::to_json(t).dump(), false);
  if (!revision) return revision.error();
  if (!fleet_config_->wait_applied(*revision, apply_wait(config_.fleet))) {
    return api_error(ApiErrorCode::unavailable, "the change is in etcd (revision " + std::to_string(*revision) +
                                                    ") but not applied here yet; GET it again shortly");
  }
  return get_tenant(id);
}

ApiResult<Ok> ControlPlane::delete_tenant(std::uint32_t id) {
  if (!fleet_config_) return local_delete_tenant(id);
  {
    std::lock_guard lock(mutex_);
    if (!registry_.tenants().contains(id)) {
      return api_error(ApiErrorCode::not_found, "no tenant with id " + std::to_string(id));
    }
    for (const auto& [name, a] : registry_.agents()) {
      if (a.tenant == id) {
        return api_error(ApiErrorCode::conflict,
                         "tenant " + std::to_string(id) + " is used by agent '" + name + "'; delete or move it first");
      }
    }
  }
  auto revision = fleet_config_->remove(Kind::tenant, std::to_string(id));
  if (!revision) return revision.error();
  (void)fleet_config_->wait_applied(*revision, apply_wait(config_.fleet));
  return Ok{};
}

}  // namespace axon::controlplane
