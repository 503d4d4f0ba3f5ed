// Registry: tenants, agents and state.json (see registry.h).
#include "registry.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "axon/common/log.h"

#include "api/json.h"
#include "files.h"

namespace axon::controlplane {
namespace {
constexpr const char* kLog = "controlplane";
}  // namespace

Result<Ok, DaemonError> Registry::load() {
  std::string path = config_.state_dir + "/state.json";
  std::ifstream in(path);
  if (!in) {
    for (const auto& t : config_.tenants) tenants_[t.id] = t;
    for (const auto& a : config_.agents) agents_[a.name] = a;
    AXON_LOG_INFO(kLog, "no %s yet: registry seeded from %s (%zu tenant(s), %zu agent(s))", path.c_str(),
                  config_.source_path.c_str(), tenants_.size(), agents_.size());
  } else {
    std::stringstream text;
    text << in.rdbuf();
    if (auto loaded = parse(text.str()); !loaded) {
      return make_error(DaemonError::state, "cannot load " + path + ": " + loaded.message() +
                                                "; fix or move the file away (the registry is then re-seeded from "
                                                "the config)");
    }
    AXON_LOG_INFO(kLog, "registry from %s: %zu tenant(s), %zu agent(s)", path.c_str(), tenants_.size(), agents_.size());
  }
  // Resources without a revision (seeded, or from a state.json of an older version) get one.
  for (const auto& [id, t] : tenants_) tenant_revisions_.try_emplace(std::to_string(id), 0);
  for (const auto& [name, a] : agents_) agent_revisions_.try_emplace(name, 0);
  for (auto* revisions : {&tenant_revisions_, &agent_revisions_}) {
    for (auto& [key, revision] : *revisions) {
      if (revision <= 0) revision = ++revision_;
    }
  }
  if (auto saved = save(); !saved) return make_error(DaemonError::state, saved.message());
  return Ok{};
}

ApiResult<Ok> Registry::parse(const std::string& text) {
  const auto state = nlohmann::json::parse(text, nullptr, false);
  if (state.is_discarded() || !state.is_object()) {
    return api_error(ApiErrorCode::invalid_argument, "not a JSON object");
  }
  const auto tenants = state.find("tenants");
  const auto agents = state.find("agents");
  if (tenants == state.end() || !tenants->is_array() || agents == state.end() || !agents->is_array()) {
    return api_error(ApiErrorCode::invalid_argument, "needs the arrays 'tenants' and 'agents'");
  }
  for (const auto& t : *tenants) {
    auto spec = json_io::tenant_spec_from_json(t);
    if (!spec) return spec.error();
    tenants_[spec->id] = spec.value();
  }
  for (const auto& a : *agents) {
    auto spec = json_io::agent_spec_from_json(a);
    if (!spec) return spec.error();
    agents_[spec->name] = spec.value();
  }
  const auto version = state.find("table_version");
  table_version_ = version != state.end() && version->is_number_unsigned() ? version->get<std::uint64_t>() : 0;
  // Revisions (absent in a state.json written before they existed: load() numbers them).
  const auto counter = state.find("revision");
  revision_ = counter != state.end() && counter->is_number_unsigned() ? counter->get<std::int64_t>() : 0;
  const auto revisions = state.find("revisions");
  if (revisions != state.end() && revisions->is_object()) {
    auto read = [&](const char* kind, std::map<std::string, std::int64_t>& out,
                    const std::function<bool(const std::string&)>& exists) {
      const auto section = revisions->find(kind);
      if (section == revisions->end() || !section->is_object()) return;
      for (const auto& [key, value] : section->items()) {
        if (value.is_number_unsigned() && exists(key)) out[key] = std::min(value.get<std::int64_t>(), revision_);
      }
    };
    read("tenants", tenant_revisions_, [&](const std::string& key) {
      for (const auto& [id, t] : tenants_) {
        if (std::to_string(id) == key) return true;
      }
      return false;
    });
    read("agents", agent_revisions_, [&](const std::string& key) { return agents_.contains(key); });
  }
  return Ok{};
}

ApiResult<Ok> Registry::save() const {
  nlohmann::json state;
  state["version"] = 1;
  state["table_version"] = table_version_;
  state["revision"] = revision_;
  state["revisions"] = {{"tenants", tenant_revisions_}, {"agents", agent_revisions_}};
  state["tenants"] = nlohmann::json::array();
  for (const auto& [id, t] : tenants_) state["tenants"].push_back(json_io::to_json(t));
  state["agents"] = nlohmann::json::array();
  for (const auto& [name, a] : agents_) state["agents"].push_back(json_io::to_json(a));
  std::string path = config_.state_dir + "/state.json";
  if (!write_atomically(path, state.dump(2) + "\n", 0640)) {
    // The change is in force; only its persistence failed. Say so loudly: a restart would
    // lose it.
    AXON_LOG_ERROR(kLog, "cannot write %s: %s; the change is active but will not survive a restart", path.c_str(),
                   std::strerror(errno));
    return api_error(ApiErrorCode::internal,
                     "the change is active but could not be saved to " + path + ": " + std::strerror(errno));
  }
  return Ok{};
}

void Registry::set_agent(const AgentSpec& spec) {
  agents_[spec.name] = spec;
  agent_revisions_[spec.name] = ++revision_;
}

void Registry::erase_agent(const std::string& name) {
  agents_.erase(name);
  agent_revisions_.erase(name);
}

std::map<std::string, std::int64_t> Registry::revisions(Resource kind) const {
  return kind == Resource::tenant ? tenant_revisions_ : agent_revisions_;
}

ApiResult<Ok> Registry::check(const Precondition& pre, Resource kind, const std::string& key,
                              const std::string& what) const {
  if (pre.kind == Precondition::Kind::none) return Ok{};
  const auto& revisions = kind == Resource::tenant ? tenant_revisions_ : agent_revisions_;
  const auto it = revisions.find(key);
  const std::int64_t now = it == revisions.end() ? 0 : it->second;
  if (pre.kind == Precondition::Kind::exists) {
    if (now != 0) return Ok{};
    return api_error(ApiErrorCode::conflict, what + " does not exist (If-Match: * writes only an existing one)");
  }
  if (now == pre.revision) return Ok{};
  return api_error(ApiErrorCode::conflict, what + " was changed meanwhile (its revision is " +
                                               (now == 0 ? std::string("none: it was deleted") : std::to_string(now)) +
                                               ", the request expected " + std::to_string(pre.revision) +
                                               "): read it again and retry");
}

const AgentSpec* Registry::agent(const std::string& name) const {
  auto it = agents_.find(name);
  return it == agents_.end() ? nullptr : &it->second;
}

ApiResult<Ok> Registry::validate_agent(const AgentSpec& spec, const std::string* replacing) const {
  if (auto why = check_agent(spec, config_); !why.empty()) return api_error(ApiErrorCode::invalid_argument, why);
  if (!tenants_.contains(spec.tenant)) {
    return api_error(ApiErrorCode::invalid_argument,
                     "agent '" + spec.name + "': tenant " + std::to_string(spec.tenant) +
                         " does not exist; create it with PUT /v1/tenants/" + std::to_string(spec.tenant));
  }
  for (const auto& [name, other] : agents_) {
    if (replacing != nullptr && name == *replacing) continue;
    if (name == spec.name) return api_error(ApiErrorCode::conflict, "agent '" + spec.name + "' already exists");
    if (other.id == spec.id) {
      return api_error(ApiErrorCode::conflict,
                       "agent id " + std::to_string(spec.id) + " is already used by agent '" + name + "'");
    }
  }
  return Ok{};
}

ApiResult<TenantSpec> Registry::put_tenant(std::uint32_t id, const TenantSpec& spec) {
  TenantSpec t = spec;
  if (t.id != 0 && t.id != id) {
    return api_error(ApiErrorCode::invalid_argument,
                     "the body's id " + std::to_string(t.id) + " differs from the path's " + std::to_string(id));
  }
  t.id = id;
  if (auto why = check_tenant(t); !why.empty()) return api_error(ApiErrorCode::invalid_argument, why);
  for (const auto& [other_id, other] : tenants_) {
    if (other_id != id && other.name == t.name) {
      return api_error(ApiErrorCode::conflict,
                       "tenant name '" + t.name + "' is already used by tenant " + std::to_string(other_id));
    }
  }
  tenants_[id] = t;
  tenant_revisions_[std::to_string(id)] = ++revision_;
  if (const auto saved = save(); !saved) return saved.error();
  return t;
}

ApiResult<Ok> Registry::delete_tenant(std::uint32_t id) {
  if (!tenants_.contains(id)) return api_error(ApiErrorCode::not_found, "no tenant with id " + std::to_string(id));
  for (const auto& [name, a] : agents_) {
    if (a.tenant == id) {
      return api_error(ApiErrorCode::conflict,
                       "tenant " + std::to_string(id) + " is used by agent '" + name + "'; delete or move it first");
    }
  }
  tenants_.erase(id);
  tenant_revisions_.erase(std::to_string(id));
  return save();
}

}  // namespace axon::controlplane
