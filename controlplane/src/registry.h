// Registry: the control plane's record of tenants and agents, and its persistence.
//
// One job: what is registered, whether a change is valid (names, ids, references), and
// keeping <state_dir>/state.json in step (seeded from the config the first time), and each
// resource's revision for conditional writes without a fleet (model.h Precondition). It runs
// no processes and talks to no data plane: pools read the agents, the data plane link gets
// its tables built from them. Not thread-safe; the daemon serialises calls.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "axon/common/result.h"
#include "axon/controlplane/config.h"
#include "axon/controlplane/model.h"

namespace axon::controlplane {

enum class DaemonError { cgroups, state, io_error, fleet };

class Registry {
 public:
  // `config` must outlive the registry (state_dir, seeds, cgroup profiles for validation).
  explicit Registry(const ControlplaneConfig& config) : config_(config) {}

  // Loads state.json, or seeds from the config when there is none yet, and writes it back.
  Result<Ok, DaemonError> load();
  // Writes state.json; internal error: the change is in force but would not survive a restart.
  ApiResult<Ok> save() const;

  const std::map<std::string, AgentSpec>& agents() const { return agents_; }
  const std::map<std::uint32_t, TenantSpec>& tenants() const { return tenants_; }
  const AgentSpec* agent(const std::string& name) const;

  // invalid_argument (bad fields, unknown tenant) or conflict (name or id taken by another
  // agent than `replacing`).
  ApiResult<Ok> validate_agent(const AgentSpec& spec, const std::string* replacing) const;
  // Stores a validated agent (a new revision) / forgets one; the caller saves.
  void set_agent(const AgentSpec& spec);
  void erase_agent(const std::string& name);

  // Validates (invalid_argument, conflict on a taken name), stores and saves.
  ApiResult<TenantSpec> put_tenant(std::uint32_t id, const TenantSpec& spec);
  // not_found, conflict while an agent uses it; saves.
  ApiResult<Ok> delete_tenant(std::uint32_t id);

  // Revisions: each resource's is the value of the registry's write counter when it was last
  // written (persisted with it, so a revision is never reused). Keys as in ControlApi.
  std::map<std::string, std::int64_t> revisions(Resource kind) const;
  // conflict unless `pre` holds for the resource `key` of `kind` (`what` names it).
  ApiResult<Ok> check(const Precondition& pre, Resource kind, const std::string& key, const std::string& what) const;

  // The next table version to push; persisted with the registry so a restarted control
  // plane never reuses one.
  std::uint64_t next_table_version() { return ++table_version_; }

 private:
  ApiResult<Ok> parse(const std::string& text);

  const ControlplaneConfig& config_;
  std::map<std::string, AgentSpec> agents_;  // by name
  std::map<std::uint32_t, TenantSpec> tenants_;
  std::uint64_t table_version_ = 0;
  std::int64_t revision_ = 0;  // the write counter
  std::map<std::string, std::int64_t> agent_revisions_;
  std::map<std::string, std::int64_t> tenant_revisions_;  // by id in decimal
};

}  // namespace axon::controlplane
