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
  return with_fleet_tuning(fleet_->view_json());
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

void ControlPlane::fleet_refused(const FleetConfig::Change& c, const std::string& why) {
  std::lock_guard lock(mutex_);
  ++fleet_apply_failures_;
  const char* kind = c.kind == Kind::agent ? "agent" : c.kind == Kind::tenant ? "tenant" : "tuning";
  AXON_LOG_WARN(kLog, "cannot apply %s %s from etcd: %s", kind, c.name.c_str(), why.c_str());
}

void ControlPlane::apply_fleet_config(const std::vector<FleetConfig::Change>& changes, bool full) {
  // Tenants before the agents that use them; deleted agents before their tenants.
  std::set<std::string> seen;  // keys ("tenants/1", "agents/echo") present in etcd
  for (const auto& c : changes) {
    if (c.kind == Kind::tenant && !c.deleted) apply_fleet_tenant(c, seen);
  }
  for (const auto& c : changes) {
    if (c.kind == Kind::agent && !c.deleted) apply_fleet_agent(c, seen);
  }
  bool tuning_listed = false;
  for (const auto& c : changes) {
    if (c.kind != Kind::tuning) continue;
    tuning_listed = true;
    apply_fleet_tuning(c);
  }
  if (full && !tuning_listed) forget_fleet_tuning();
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
      if (!seen.contains("agents/" + name)) agents_gone.push_back(name);
    }
    for (const auto& [id, spec] : registry_.tenants()) {
      if (!seen.contains("tenants/" + std::to_string(id))) tenants_gone.push_back(id);
    }
    std::erase_if(fleet_revisions_, [&](const auto& entry) { return !seen.contains(entry.first); });
  }
  for (const auto& name : agents_gone) {
    note_fleet_revision("agents/" + name, 0);
    if (auto gone = local_delete_agent(name); !gone && gone.error().code != ApiErrorCode::not_found) {
      fleet_refused(FleetConfig::Change{Kind::agent, name, true, "", 0}, gone.error().message);
    }
  }
  for (const auto id : tenants_gone) {
    note_fleet_revision("tenants/" + std::to_string(id), 0);
    if (auto gone = local_delete_tenant(id); !gone && gone.error().code != ApiErrorCode::not_found) {
      fleet_refused(FleetConfig::Change{Kind::tenant, std::to_string(id), true, "", 0}, gone.error().message);
    }
  }
}

void ControlPlane::apply_fleet_tenant(const FleetConfig::Change& c, std::set<std::string>& seen) {
  const auto body = json_io::parse_body(c.value);
  const std::uint32_t id = static_cast<std::uint32_t>(std::strtoul(c.name.c_str(), nullptr, 10));
  auto spec = body ? json_io::tenant_spec_from_json(*body, id) : ApiResult<TenantSpec>(body.error());
  if (!spec) return fleet_refused(c, spec.error().message);
  seen.insert("tenants/" + std::to_string(id));
  if (auto put = local_put_tenant(id, *spec); !put) return fleet_refused(c, put.error().message);
  note_fleet_revision("tenants/" + std::to_string(id), c.mod_revision);
}

void ControlPlane::apply_fleet_agent(const FleetConfig::Change& c, std::set<std::string>& seen) {
  const auto body = json_io::parse_body(c.value);
  auto spec = body ? json_io::agent_spec_from_json(*body, c.name) : ApiResult<AgentSpec>(body.error());
  if (!spec) return fleet_refused(c, spec.error().message);
  seen.insert("agents/" + c.name);
  bool exists = false, same = false;
  {
    std::lock_guard lock(mutex_);
    const auto found = find_agent(c.name);
    exists = found.ok();
    same = exists && json_io::to_json(*found.value()) == json_io::to_json(*spec);
  }
  if (!same) {
    auto done = exists ? local_replace_agent(c.name, *spec) : local_create_agent(*spec);
    if (!done) return fleet_refused(c, done.error().message);
  }
  note_fleet_revision("agents/" + c.name, c.mod_revision);
}

// ---- REST writes: to etcd in a fleet -----------------------------------------------------------

namespace {

// How long a REST write waits for its own change to come back through the watch.
std::chrono::milliseconds apply_wait(const FleetSettings& fleet) {
  return fleet.request_timeout * 2;
}

}  // namespace

ApiResult<AgentStatus> ControlPlane::fleet_put_agent(const AgentSpec& spec, bool create, const Precondition& pre) {
  auto revision = fleet_config_->put(Kind::agent, spec.name, json_io::to_json(spec).dump(), create, pre);
  if (!revision) return revision.error();
  if (!fleet_config_->wait_applied(*revision, apply_wait(config_.fleet))) {
    return api_error(ApiErrorCode::unavailable, "the change is in etcd (revision " + std::to_string(*revision) +
                                                    ") but not applied here yet; GET it again shortly");
  }
  return get_agent(spec.name);
}

// ---- revisions and the unconditional writes ---------------------------------------------------

void ControlPlane::note_fleet_revision(const std::string& key, std::int64_t revision) {
  std::lock_guard lock(mutex_);
  if (revision > 0) {
    fleet_revisions_[key] = revision;
  } else {
    fleet_revisions_.erase(key);
  }
}

std::map<std::string, std::int64_t> ControlPlane::revisions(Resource kind) {
  std::lock_guard lock(mutex_);
  if (!fleet_config_) return registry_.revisions(kind);
  const std::string dir = kind == Resource::tenant ? "tenants/" : "agents/";
  std::map<std::string, std::int64_t> out;
  for (const auto& [key, revision] : fleet_revisions_) {
    if (key.rfind(dir, 0) == 0) out.emplace(key.substr(dir.size()), revision);
  }
  return out;
}

ApiResult<AgentStatus> ControlPlane::replace_agent(const std::string& name, const AgentSpec& spec) {
  return replace_agent_if(name, spec, {});
}
ApiResult<AgentStatus> ControlPlane::scale_agent(const std::string& name, const ScaleRequest& request) {
  return scale_agent_if(name, request, {});
}
ApiResult<Ok> ControlPlane::delete_agent(const std::string& name) {
  return delete_agent_if(name, {});
}
ApiResult<TenantSpec> ControlPlane::put_tenant(std::uint32_t id, const TenantSpec& spec) {
  return put_tenant_if(id, spec, {});
}
ApiResult<Ok> ControlPlane::delete_tenant(std::uint32_t id) {
  return delete_tenant_if(id, {});
}

// ---- the writes: to etcd with compare-and-swap in a fleet, else applied here at once ----------

ApiResult<AgentStatus> ControlPlane::create_agent(const AgentSpec& spec) {
  if (!fleet_config_) return local_create_agent(spec);
  {
    std::lock_guard lock(mutex_);
    if (auto valid = registry_.validate_agent(spec, nullptr); !valid) return valid.error();
  }
  return fleet_put_agent(spec, true, {});
}

ApiResult<AgentStatus> ControlPlane::replace_agent_if(const std::string& name, const AgentSpec& spec,
                                                      const Precondition& pre) {
  if (!fleet_config_) return local_replace_agent(name, spec, pre);
  {
    std::lock_guard lock(mutex_);
    if (const auto found = find_agent(name); !found) return found.error();
    if (spec.name != name) {
      return api_error(ApiErrorCode::invalid_argument, "the body's name '" + spec.name + "' differs from the path's '" +
                                                           name + "'; agents cannot be renamed");
    }
    if (auto valid = registry_.validate_agent(spec, &name); !valid) return valid.error();
  }
  return fleet_put_agent(spec, false, pre);
}

ApiResult<AgentStatus> ControlPlane::scale_agent_if(const std::string& name, const ScaleRequest& request,
                                                    const Precondition& pre) {
  if (!fleet_config_) return local_scale_agent(name, request, pre);
  AgentSpec spec;
  {
    std::lock_guard lock(mutex_);
    const auto found = find_agent(name);
    if (!found) return found.error();
    // The new spec is this appliance's copy with new bounds: written at the client's revision,
    // it must be that revision's copy, or the write would undo what this appliance has not
    // applied yet.
    if (pre.kind == Precondition::Kind::revision) {
      const auto it = fleet_revisions_.find("agents/" + name);
      const std::int64_t here = it == fleet_revisions_.end() ? 0 : it->second;
      if (here != pre.revision) {
        return api_error(ApiErrorCode::conflict, "agent '" + name + "' is at revision " + std::to_string(here) +
                                                     " on this appliance, the request expected " +
                                                     std::to_string(pre.revision) + ": read it again and retry");
      }
    }
    auto scaled = scaled_spec(*found.value(), request, config_);
    if (!scaled) return scaled.error();
    spec = scaled.value();
  }
  return fleet_put_agent(spec, false, pre);
}

ApiResult<Ok> ControlPlane::delete_agent_if(const std::string& name, const Precondition& pre) {
  if (!fleet_config_) return local_delete_agent(name, pre);
  {
    std::lock_guard lock(mutex_);
    if (const auto found = find_agent(name); !found) return found.error();
  }
  auto revision = fleet_config_->remove(Kind::agent, name, pre);
  if (!revision) return revision.error();
  (void)fleet_config_->wait_applied(*revision, apply_wait(config_.fleet));
  return Ok{};
}

ApiResult<TenantSpec> ControlPlane::put_tenant_if(std::uint32_t id, const TenantSpec& spec, const Precondition& pre) {
  if (!fleet_config_) return local_put_tenant(id, spec, pre);
  TenantSpec t = spec;
  if (t.id != 0 && t.id != id) {
    return api_error(ApiErrorCode::invalid_argument,
                     "the body's id " + std::to_string(t.id) + " differs from the path's " + std::to_string(id));
  }
  t.id = id;
  if (auto why = check_tenant(t); !why.empty()) return api_error(ApiErrorCode::invalid_argument, why);
  auto revision = fleet_config_->put(Kind::tenant, std::to_string(id), json_io::to_json(t).dump(), false, pre);
  if (!revision) return revision.error();
  if (!fleet_config_->wait_applied(*revision, apply_wait(config_.fleet))) {
    return api_error(ApiErrorCode::unavailable, "the change is in etcd (revision " + std::to_string(*revision) +
                                                    ") but not applied here yet; GET it again shortly");
  }
  return get_tenant(id);
}

ApiResult<Ok> ControlPlane::delete_tenant_if(std::uint32_t id, const Precondition& pre) {
  if (!fleet_config_) return local_delete_tenant(id, pre);
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
  auto revision = fleet_config_->remove(Kind::tenant, std::to_string(id), pre);
  if (!revision) return revision.error();
  (void)fleet_config_->wait_applied(*revision, apply_wait(config_.fleet));
  return Ok{};
}

}  // namespace axon::controlplane
