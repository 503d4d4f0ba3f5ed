// ControlPlane: the daemon's control loop and the pools, wired to its other components and
// exposed as ControlApi.
//
// Components, each with one job: Registry (registry.h: tenants, agents, state.json),
// DataplaneLink (dataplane_link.h: control socket, table pushes, stats segment), the
// metrics exporter (metrics_exporter.h), and the pools kept here (pools.cc: one warm pool
// of worker processes per agent over Supervisor + CgroupDriver: spawn, respawn, breaker,
// drains, scaling, takeover). control_plane.cc wires them and runs tick(); control_api.cc
// implements ControlApi over them. The REST threads call the ControlApi methods; the control
// loop calls tick(). Both take mutex_, so every decision sees one consistent state; nothing
// under the lock blocks for long (spawns return at exec, data-plane calls have a short
// timeout).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "axon/common/result.h"
#include "axon/controlplane/cgroup.h"
#include "axon/controlplane/config.h"
#include "axon/controlplane/model.h"
#include "axon/controlplane/supervisor.h"
#include "axon/dataplane/control.h"
#include "axon/tuning/service.h"

#include "autoscaler.h"
#include "dataplane_link.h"
#include "fleet.h"
#include "fleet_config.h"
#include "otlp_exporter.h"
#include "registry.h"
#include "trace_store.h"

namespace axon::controlplane {

AutoscalerPolicy autoscaler_policy(const PoolSettings& pools);  // scaling.cc
// `spec` with a scale request's bounds, checked (control_api.cc).
ApiResult<AgentSpec> scaled_spec(AgentSpec spec, const ScaleRequest& request, const ControlplaneConfig& config);

class ControlPlane final : public ControlApi {
 public:
  explicit ControlPlane(ControlplaneConfig config);
  ~ControlPlane() override;
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Opens cgroups, loads the registry, takes over the workers a previous control plane
  // left running (and stops strays in our cgroups), connects to the data plane if it is up.
  Result<Ok, DaemonError> start();
  // One control-loop iteration: reap/respawn, data plane link, scaling, drains, routes.
  void tick();
  // The fd the loop polls (supervisor events) and how long it may sleep at most.
  int wait_fd() const;
  std::chrono::milliseconds next_timeout() const;
  // on_exit = "stop": drain and stop every worker (bounded by drain_timeout + stop_grace);
  // "keep": leave them for the next control plane.
  void shutdown();
  // Whether every pool is up: the data plane is linked and each agent has its minimum of
  // warm workers. `failure` says why a pool cannot start (its breaker opened); `waiting`
  // what it still waits for. The daemon reports ready only once `ready`.
  struct Readiness {
    bool ready = false;
    std::string failure;
    std::string waiting;
  };
  Readiness readiness();
  // One line for sd_notify STATUS= and the log.
  std::string status_line();
  SystemStatus system_status();  // what status() returns; it cannot fail

  // ControlApi
  ApiResult<SystemStatus> status() override;
  ApiResult<std::vector<AgentStatus>> list_agents() override;
  ApiResult<AgentStatus> get_agent(const std::string& name) override;
  // The writes: to etcd with compare-and-swap in a fleet (fleet_api.cc, applied here through
  // the watch), else the local_* versions at once.
  ApiResult<AgentStatus> create_agent(const AgentSpec& spec) override;
  ApiResult<AgentStatus> replace_agent(const std::string& name, const AgentSpec& spec) override;
  ApiResult<Ok> delete_agent(const std::string& name) override;
  ApiResult<AgentStatus> scale_agent(const std::string& name, const ScaleRequest& request) override;
  ApiResult<AgentStatus> reset_breaker(const std::string& name) override;
  ApiResult<ScalingStatus> get_scaling(const std::string& name) override;
  ApiResult<Ok> invalidate_cache(const std::optional<std::string>& agent) override;  // cache_api.cc
  ApiResult<CacheStatus> get_cache(const std::string& agent) override;               // cache_api.cc
  ApiResult<std::vector<WorkerInfo>> list_workers(const std::optional<std::string>& agent) override;
  ApiResult<WorkerInfo> drain_worker(const std::string& id) override;
  ApiResult<WorkerInfo> kill_worker(const std::string& id) override;
  ApiResult<std::vector<TenantSpec>> list_tenants() override;
  ApiResult<TenantSpec> get_tenant(std::uint32_t id) override;
  ApiResult<TenantSpec> put_tenant(std::uint32_t id, const TenantSpec& spec) override;
  ApiResult<Ok> delete_tenant(std::uint32_t id) override;
  // Revisions and conditional writes (model.h Precondition; fleet_api.cc): the registry's
  // revisions without a fleet, the etcd mod_revisions applied here with one.
  std::map<std::string, std::int64_t> revisions(Resource kind) override;
  ApiResult<AgentStatus> replace_agent_if(const std::string& name, const AgentSpec& spec,
                                          const Precondition& pre) override;
  ApiResult<Ok> delete_agent_if(const std::string& name, const Precondition& pre) override;
  ApiResult<AgentStatus> scale_agent_if(const std::string& name, const ScaleRequest& request,
                                        const Precondition& pre) override;
  ApiResult<TenantSpec> put_tenant_if(std::uint32_t id, const TenantSpec& spec, const Precondition& pre) override;
  ApiResult<Ok> delete_tenant_if(std::uint32_t id, const Precondition& pre) override;
  ApiResult<std::vector<RouteInfo>> list_routes() override;
  ApiResult<std::string> metrics() override;
  ApiResult<TopSnapshot> top() override;                                             // top.cc
  ApiResult<std::vector<TraceEntry>> list_traces(const TraceQuery& query) override;  // trace_api.cc
  ApiResult<std::vector<TraceEntry>> get_trace(const std::string& trace_id) override;
  ApiResult<std::string> fleet() override;  // fleet_api.cc
  ApiResult<TuningReply> tuning(const std::string& method, const std::string& path, const std::string& query,
                                const std::string& body) override;
  ApiResult<TuningReply> tuning_apply(const std::string& body, const Precondition& pre) override;  // fleet_tuning.cc

 private:
  using Clock = std::chrono::steady_clock;

  struct Worker {
    std::string id;
    std::string agent;
    std::string slot;
    bool draining = false;
    Clock::time_point drain_started{};
    bool stop_requested = false;
    pid_t replaced_pid = 0;   // the process replace_stalled() killed (killed once, not per tick)
    pid_t grant_pending = 0;  // respawned while the data plane still held its predecessor's slot
  };

  struct Pool {
    std::uint32_t target = 0;  // between spec.pool.min and max
    std::uint32_t next_index = 0;
    bool deleting = false;  // deleted: workers draining, no respawn
    std::string cgroup;     // deleted: removed once its last worker is gone
    std::string no_slot_warned;
  };

  // All private helpers expect mutex_ held.
  void save_runtime();
  void take_over();
  void supervise_dataplane();
  Result<SpawnSpec, IdentityError> spawn_spec(const AgentSpec& agent, const std::string& worker_id,
                                              const std::string& slot) const;
  std::size_t slot_position(const std::string& slot) const;
  std::string cgroup_of(const AgentSpec& agent) const;
  Result<Ok, CgroupError> ensure_cgroup(const AgentSpec& agent);
  std::optional<std::string> free_slot() const;
  void start_worker(const AgentSpec& agent, Pool& pool);
  void grant_slot(const std::string& slot, const AgentSpec& agent) const;
  void send_grant(const std::string& slot, pid_t pid);
  void begin_drain(Worker& worker);
  void on_member_event(const MemberEvent& event);

  // The writes applied here (control_api.cc): REST without a fleet (`pre` checked against the
  // registry's revisions), the fleet's watch with one.
  ApiResult<AgentStatus> local_create_agent(const AgentSpec& spec);
  ApiResult<AgentStatus> local_replace_agent(const std::string& name, const AgentSpec& spec,
                                             const Precondition& pre = {});
  ApiResult<Ok> local_delete_agent(const std::string& name, const Precondition& pre = {});
  ApiResult<AgentStatus> local_scale_agent(const std::string& name, const ScaleRequest& request,
                                           const Precondition& pre = {});
  ApiResult<TenantSpec> local_put_tenant(std::uint32_t id, const TenantSpec& spec, const Precondition& pre = {});
  ApiResult<Ok> local_delete_tenant(std::uint32_t id, const Precondition& pre = {});
  // fleet_api.cc: the fleet's configuration applied through the local_* writes.
  void apply_fleet_config(const std::vector<FleetConfig::Change>& changes, bool full);
  void apply_fleet_tenant(const FleetConfig::Change& c, std::set<std::string>& seen);
  void apply_fleet_agent(const FleetConfig::Change& c, std::set<std::string>& seen);
  // fleet_tuning.cc: <prefix>config/tuning/profile applied through the tuning service, a REST
  // apply written there, and what /v1/fleet shows of it.
  void apply_fleet_tuning(const FleetConfig::Change& c);
  void forget_fleet_tuning();
  ApiResult<TuningReply> fleet_tuning_write(const std::string& body, const Precondition& pre);
  std::string with_fleet_tuning(const std::string& view) const;              // adds "tuning" to GET /v1/fleet
  void fleet_refused(const FleetConfig::Change& c, const std::string& why);  // logged and counted
  std::vector<std::pair<std::string, std::string>> fleet_seed();
  ApiResult<AgentStatus> fleet_put_agent(const AgentSpec& spec, bool create, const Precondition& pre);
  // The etcd mod_revision of each tenant ("tenants/<id>") and agent ("agents/<name>") as
  // applied here; 0 forgets one. Takes mutex_.
  void note_fleet_revision(const std::string& key, std::int64_t revision);

  void start_tuning();
  Result<Ok, DaemonError> start_traces();  // trace_api.cc
  TraceStore::Sink trace_sink();           // trace_api.cc: where new traces go besides the store
  Result<Ok, DaemonError> start_fleet();   // fleet_api.cc
  Fleet::Local fleet_local();              // fleet_api.cc; takes mutex_
  void link_dataplane();                   // refreshes the link; on a new data plane: re-push, re-grant slots
  void refresh_slots();
  void scale_pools();  // scaling.cc: samples each pool for the autoscaler, applies its decisions
  PoolSample pool_sample(const AgentSpec& agent, const Pool& pool, Clock::time_point now) const;
  void apply_scale(const std::string& agent, Pool& pool, const ScaleDecision& decision);
  std::uint64_t queue_delay_target_us(const AgentSpec& agent) const;
  void reconcile_pools();
  void progress_drains();
  void replace_stalled();        // kills workers the data plane reports stalled; the pool respawns them
  void grant_reclaimed_slots();  // grants a respawn its slot once the data plane reclaimed it
  void push_tables(bool force);
  dataplane::control::Tables build_tables() const;

  AgentStatus agent_status(const AgentSpec& spec) const;
  ScalingStatus scaling_status(const AgentSpec& spec) const;
  WorkerInfo worker_info(const Worker& worker) const;
  // Whether a spawned worker has not attached to the data plane yet (caller holds mutex_).
  bool worker_starting() const;
  ApiResult<const AgentSpec*> find_agent(const std::string& name) const;  // not_found (also while deleting)
  ApiResult<Worker*> find_worker(const std::string& id);

  ControlplaneConfig config_;
  mutable std::mutex mutex_;
  std::optional<CgroupDriver> cgroups_;
  std::unique_ptr<Supervisor> supervisor_;
  Registry registry_;
  DataplaneLink link_;
  // Host tuning ([tuning]): thread-safe on its own, so tick() and the API call it outside mutex_.
  std::unique_ptr<tuning::TuningService> tuning_;
  std::map<std::string, Pool> pools_;      // by agent name
  std::map<std::string, Worker> workers_;  // by worker id
  Autoscaler autoscaler_;
  // Scale decisions applied, by (agent, direction, reason): axon_pool_scale_events_total.
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> scale_events_;
  Clock::time_point next_scale_{};
  bool tables_dirty_ = true;
  bool runtime_dirty_ = false;
  std::uint64_t spawn_failures_ = 0;
  std::map<std::string, std::uint64_t> replacements_;  // workers killed for replacement, by reason
  std::uint64_t strays_stopped_ = 0;
  std::uint64_t adopted_ = 0;
  std::chrono::system_clock::time_point started_at_ = std::chrono::system_clock::now();
  // Last: the store's thread calls into the registry under mutex_ and hands traces to the
  // exporter, so it stops first, then the exporter.
  std::unique_ptr<OtlpExporter> exporter_;
  std::unique_ptr<TraceStore> traces_;
  // [fleet]: membership in etcd. Last: destroyed (its thread joined) before what it reads.
  std::unique_ptr<Fleet> fleet_;
  std::unique_ptr<FleetConfig> fleet_config_;            // stopped before fleet_ (it uses it)
  std::uint64_t fleet_apply_failures_ = 0;               // etcd changes this appliance refused (logged)
  std::map<std::string, std::int64_t> fleet_revisions_;  // see note_fleet_revision
  struct FleetTuning {
    std::string profile;        // the fleet's profile ("" = it sets none)
    std::int64_t revision = 0;  // the key's mod_revision this appliance acted on
    bool applied = false;       // the tuning service applied it
    int status = 0;             // the tuning service's status for the apply
    std::string reply;          // and its body: the report, or the error
  };
  FleetTuning fleet_tuning_;  // under mutex_
};

}  // namespace axon::controlplane
