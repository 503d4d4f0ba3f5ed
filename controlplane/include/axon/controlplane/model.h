// The control plane's resource model: what the REST API, axonctl and the daemon agree on.
//
// The REST layer (src/api/) turns HTTP + JSON into calls on ControlApi and results back
// into JSON; the daemon implements ControlApi over the registry, the worker pools and
// the data plane link. Keeping the model here, free of HTTP and of process handling,
// lets the API be tested against a fake and the daemon be tested without HTTP.
//
// JSON field names are the struct member names below (snake_case). Unknown fields in a
// request body are rejected with 400 naming the field.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "axon/common/model.h"
#include "axon/common/result.h"
#include "axon/controlplane/traces.h"

namespace axon::controlplane {

// The error channel of every ControlApi method (control plane only, never the data path):
// a code and a message that tells the operator what to do. Only the REST layer turns the
// code into an HTTP status (400, 404, 409, 503, 500) and the message into {"error": ...}.
enum class ApiErrorCode { invalid_argument, not_found, conflict, unavailable, internal };
using ApiError = Error<ApiErrorCode>;
template <typename T>
using ApiResult = Result<T, ApiErrorCode>;

inline ApiError api_error(ApiErrorCode code, std::string message) {
  return ApiError{code, std::move(message)};
}
inline const char* to_string(ApiErrorCode code) {
  switch (code) {
    case ApiErrorCode::invalid_argument: return "invalid_argument";
    case ApiErrorCode::not_found: return "not_found";
    case ApiErrorCode::conflict: return "conflict";
    case ApiErrorCode::unavailable: return "unavailable";
    case ApiErrorCode::internal: return "internal";
  }
  return "internal";
}

enum class PriorityClass { realtime, standard, batch };  // JSON: "realtime" | "standard" | "batch"

// JSON: "closed" (normal), "open" (crash loop: no respawn until cooldown), "half_open"
// (one trial worker after the cooldown).
enum class BreakerState { closed, open, half_open };

// JSON: "starting" (spawned, not attached to its slot yet), "warm" (attached, idle),
// "busy" (attached, requests in flight), "draining" (no new requests), "backoff"
// (crashed, waiting to respawn), "stopped".
enum class WorkerState { starting, warm, busy, draining, backoff, stopped };

// Their JSON names in value order (the strict JSON reader finds these by ADL).
constexpr std::array<const char*, 3> enum_names(PriorityClass) {
  return {"realtime", "standard", "batch"};
}
constexpr std::array<const char*, 3> enum_names(BreakerState) {
  return {"closed", "open", "half_open"};
}
constexpr std::array<const char*, 6> enum_names(WorkerState) {
  return {"starting", "warm", "busy", "draining", "backoff", "stopped"};
}

struct PoolSize {
  std::uint32_t min = 1;  // kept warm at all times
  std::uint32_t max = 1;  // upper bound when scaling with load
};

// What an operator registers (POST /v1/agents, PUT /v1/agents/{name}): the shared model's
// Agent (name, id, tenant) plus what only the control plane needs to run its workers.
struct AgentSpec {
  std::string name;          // [a-z0-9][a-z0-9_-]{0,31}; unique
  std::uint32_t id = 0;      // AXP agent id (1..2^32-1); unique
  std::uint32_t tenant = 0;  // AXP tenant id; must exist
  PriorityClass priority = PriorityClass::standard;
  std::vector<std::string> command;        // argv; command[0] is an absolute path
  std::map<std::string, std::string> env;  // extra environment (optional)
  std::string user;                        // run as this user (optional; "" = daemon default)
  PoolSize pool;
  std::string cgroup_profile = "default";  // a [cgroup_profiles.<name>] from the config
  // Dispatch policy, class scheduling, reserved interactive capacity and admission control,
  // pushed to the data plane as they are (JSON: flat fields "dispatch", "class_scheduling",
  // "reserved_interactive", "reserved_interactive_share", "queue_delay_target_us",
  // "high_water"; docs/scheduling.md). queue_delay_target_us is also the autoscaler's target.
  model::Scheduling scheduling{};

  model::Agent agent() const { return model::Agent{id, tenant, name, scheduling}; }  // what the data plane routes on
};

struct AgentStatus {
  AgentSpec spec;
  std::uint32_t workers = 0;  // processes alive
  std::uint32_t warm = 0;     // attached and serving
  BreakerState breaker = BreakerState::closed;
  std::uint64_t restarts = 0;                       // respawns since registration
  std::uint64_t crashes_in_window = 0;              // what the breaker counts
  std::optional<std::int64_t> breaker_retry_in_ms;  // while open: until half_open
  std::string last_exit;                            // e.g. "killed by signal 9", "exited with status 1"
};

struct WorkerInfo {
  std::string id;  // stable for the worker's life: "<agent>-<n>"
  std::string agent;
  std::string slot;      // the data plane slot it is attached to
  std::int32_t pid = 0;  // 0 while in backoff
  WorkerState state = WorkerState::starting;
  std::int64_t started_at_ms = 0;  // unix ms
  std::uint64_t restarts = 0;
  std::string cgroup;  // path relative to the cgroup root
  std::uint64_t inflight = 0;
  std::uint64_t ring_depth = 0;
  std::uint64_t ring_depth_interactive = 0, ring_depth_background = 0;  // ring_depth per request ring
  std::uint64_t completed = 0;
  // The supervisor's last crash decision (docs/scheduling.md, "Crash respawn and crash loops").
  std::string last_exit;                    // how its last process ended; "" if none did
  std::uint32_t crash_streak = 0;           // quick crashes in a row: 1 after a first crash, 0 after a stable run
  std::int64_t last_respawn_delay_ms = 0;   // 0: the last crash was respawned at once
  std::optional<std::int64_t> retry_in_ms;  // in backoff: until the respawn
};

// A tenant and a route are the shared model's (axon/common/model.h): the data plane's
// config and control socket carry the same structs.
using TenantSpec = model::Tenant;  // PUT /v1/tenants/{id}
using RouteInfo = model::Route;    // one agent's entry in the table pushed to the data plane (GET /v1/routes)

struct DataplaneStatus {
  bool connected = false;
  std::int32_t pid = 0;
  std::string backend;  // "xdp", "uring", "dpdk"
  std::string mode;     // e.g. "copy", "zero-copy"
  std::string interface;
  bool ready = false;
  std::int64_t heartbeat_age_ms = -1;
  std::uint64_t table_version = 0;  // last tables the data plane accepted
  std::uint64_t rx_frames = 0;
  std::uint64_t requests = 0;
  std::uint64_t responses = 0;
  std::uint64_t drops = 0;  // malformed/refused frames, all reasons
  std::uint64_t errors_sent = 0;
  std::uint64_t busy_sent = 0;
};

struct SystemStatus {
  std::string version;
  std::int64_t uptime_ms = 0;
  std::string cgroup_mode;  // "v2" | "v1" (hybrid or legacy host)
  DataplaneStatus dataplane;
  std::uint32_t agents = 0;
  std::uint32_t workers = 0;
  std::uint32_t warm = 0;
  std::uint32_t breakers_open = 0;
  std::uint32_t tenants = 0;
};

// One decision of the autoscaler (docs/scheduling.md, "Warm pools and autoscaling").
struct ScaleEvent {
  std::int64_t at_ms = 0;  // unix ms
  std::uint32_t from = 0, to = 0;
  std::string direction;        // "up" | "down"
  std::string reason;           // "queue_delay" | "idle" | "min" | "max"
  std::uint64_t delay_us = 0;   // the queueing delay measured when it decided
  std::uint64_t target_us = 0;  // the agent's queue_delay_target_us then
  std::string source;           // "published" (by the data plane) | "estimated" (depth / drain rate)
  std::string worker;           // down on "idle": the worker drained
  std::string message;          // the log line
};

struct ScalingStatus {  // GET /v1/agents/{name}/scaling
  std::string agent;
  std::uint32_t target = 0;  // the pool's current size goal, within min..max
  std::uint32_t min = 0, max = 0;
  std::uint64_t queue_delay_target_us = 0;
  std::optional<std::uint64_t> queue_delay_us;  // last measured; absent before two samples
  std::string delay_source;                     // "published" | "estimated"
  std::vector<ScaleEvent> decisions;            // the last ones, oldest first
};

// GET /v1/agents/{name}/cache: the agent's response-cache settings and the data plane's cache
// figures. The data plane counts per lcore, not per agent: the figures are those of every
// cacheable agent together (docs/observability.md, "Response cache").
struct CacheStatus {
  std::string agent;
  bool cacheable = false;
  std::uint32_t cache_ttl_ms = 0;
  bool dataplane_connected = false;  // false: the figures below are all 0
  std::uint64_t hits = 0, misses = 0, insertions = 0, evictions = 0, expirations = 0, invalidations = 0;
  std::uint64_t bytes = 0, entries = 0;
  std::uint64_t hit_latency_count = 0;
  double hit_latency_p50_us = 0, hit_latency_p99_us = 0;
};

struct ScaleRequest {  // POST /v1/agents/{name}/scale
  std::optional<std::uint32_t> min;
  std::optional<std::uint32_t> max;
};

// GET /v1/top: one sample of the data plane's counters for live views (axonctl top, the
// dashboard). Counters are cumulative since the data plane started; a client computes rates
// from two samples (delta over the difference of sampled_at_ms, a monotonic clock). A counter
// that went down means the data plane restarted: start over from the newer sample.
struct TopLcore {
  std::uint32_t lcore = 0;
  std::uint64_t rx_frames = 0, requests = 0, responses = 0, busy_sent = 0, errors_sent = 0, drops = 0;
  std::uint64_t loops = 0, idle_loops = 0;  // busy % = 1 - idle_loops/loops over an interval
};

struct TopWorker {
  std::string id, agent, slot;
  std::string klass;  // the agent's priority class: "realtime" | "standard" | "batch"
  WorkerState state = WorkerState::starting;
  std::uint64_t ring_depth = 0, inflight = 0, completed = 0;
  std::uint64_t ring_depth_interactive = 0, ring_depth_background = 0;
};

// A latency histogram as sparse buckets [lower_ns, lower_ns + width_ns) with counts,
// cumulative since the data plane started; quantiles over an interval come from the bucket
// deltas of two samples.
struct TopBucket {
  std::uint64_t lower_ns = 0, width_ns = 0, count = 0;
};
struct TopStage {
  std::string stage;   // ingress, queue, handler, return, egress, total (docs/observability.md)
  std::string klass;   // "all", or an AXP priority class
  std::string source;  // how precise the buckets are: "log_linear" (within 1.6%) or "pow2"
  std::uint64_t count = 0, sum_ns = 0;
  std::vector<TopBucket> buckets;  // non-empty buckets only, ascending
};

struct TopSnapshot {
  std::int64_t sampled_at_ms = 0;  // CLOCK_MONOTONIC of the sample, for rates
  DataplaneStatus dataplane;
  std::vector<TopLcore> lcores;
  std::map<std::string, std::uint64_t> drops;  // frames dropped by reason (XDP plus userspace)
  std::map<std::string, std::uint64_t> busy;   // BUSY replies by reason
  std::vector<TopWorker> workers;
  std::vector<TopStage> stages;
};

// Conditional writes (optimistic concurrency; docs/api/openapi.yaml, "Revisions"): every
// tenant and agent has a revision, shown as its `revision` field and ETag. In a fleet it is
// the etcd mod_revision of its key; without one, the value of the registry's write counter
// when the resource was last written (persisted, never reused). A write that names the
// revision it was based on (If-Match, or a body field `revision`) happens only while the
// resource is still at that revision; otherwise it is a conflict (409).
struct Precondition {
  enum class Kind {
    none,      // unconditional
    exists,    // If-Match: * : the resource must exist
    revision,  // If-Match: "<revision>" : the resource must be at `revision`
  };
  Kind kind = Kind::none;
  std::int64_t revision = 0;
};

enum class Resource { tenant, agent };

// The daemon's operations. Every method returns its value or an ApiError (never throws);
// mutating methods are only called for callers with the admin role (the REST layer checks
// roles and audits). The comments name the error codes a method returns besides internal.
class ControlApi {
 public:
  virtual ~ControlApi() = default;

  virtual ApiResult<SystemStatus> status() = 0;

  virtual ApiResult<std::vector<AgentStatus>> list_agents() = 0;
  virtual ApiResult<AgentStatus> get_agent(const std::string& name) = 0;   // not_found
  virtual ApiResult<AgentStatus> create_agent(const AgentSpec& spec) = 0;  // invalid_argument, conflict
  virtual ApiResult<AgentStatus> replace_agent(const std::string& name,
                                               const AgentSpec& spec) = 0;  // invalid_argument, not_found
  virtual ApiResult<Ok> delete_agent(const std::string& name) = 0;          // not_found; drains its workers
  virtual ApiResult<AgentStatus> scale_agent(const std::string& name, const ScaleRequest& request) = 0;
  virtual ApiResult<AgentStatus> reset_breaker(const std::string& name) = 0;  // closes an open breaker
  // The autoscaler's view of the agent's pool and its last decisions; not_found.
  virtual ApiResult<ScalingStatus> get_scaling(const std::string& name) {
    (void)name;
    return api_error(ApiErrorCode::unavailable, "this control plane runs no autoscaler");
  }

  // The data plane's response cache: drop one agent's entries (nullopt: every agent's);
  // not_found for an unknown agent, unavailable while no data plane is linked.
  virtual ApiResult<Ok> invalidate_cache(const std::optional<std::string>& agent) {
    (void)agent;
    return api_error(ApiErrorCode::unavailable, "this control plane drives no data plane cache");
  }
  virtual ApiResult<CacheStatus> get_cache(const std::string& agent) {  // not_found
    (void)agent;
    return api_error(ApiErrorCode::unavailable, "this control plane drives no data plane cache");
  }

  virtual ApiResult<std::vector<WorkerInfo>> list_workers(const std::optional<std::string>& agent) = 0;
  virtual ApiResult<WorkerInfo> drain_worker(const std::string& id) = 0;  // not_found; returns at once, drains async
  virtual ApiResult<WorkerInfo> kill_worker(const std::string& id) = 0;   // not_found; SIGKILL, the pool respawns

  virtual ApiResult<std::vector<TenantSpec>> list_tenants() = 0;
  virtual ApiResult<TenantSpec> get_tenant(std::uint32_t id) = 0;
  virtual ApiResult<TenantSpec> put_tenant(std::uint32_t id, const TenantSpec& spec) = 0;  // create or replace
  virtual ApiResult<Ok> delete_tenant(std::uint32_t id) = 0;  // conflict while an agent uses it

  virtual ApiResult<std::vector<RouteInfo>> list_routes() = 0;

  // Revisions (see Precondition): every tenant's (key: its id in decimal) or agent's (key: its
  // name) as this appliance has it now; empty when this control plane keeps none.
  virtual std::map<std::string, std::int64_t> revisions(Resource kind) {
    (void)kind;
    return {};
  }
  // The writes above, done only while `pre` holds (conflict otherwise; invalid_argument when
  // this control plane keeps no revisions). These defaults serve unconditional writes only.
  virtual ApiResult<AgentStatus> replace_agent_if(const std::string& name, const AgentSpec& spec,
                                                  const Precondition& pre) {
    if (pre.kind != Precondition::Kind::none) return no_revisions();
    return replace_agent(name, spec);
  }
  virtual ApiResult<Ok> delete_agent_if(const std::string& name, const Precondition& pre) {
    if (pre.kind != Precondition::Kind::none) return no_revisions();
    return delete_agent(name);
  }
  virtual ApiResult<AgentStatus> scale_agent_if(const std::string& name, const ScaleRequest& request,
                                                const Precondition& pre) {
    if (pre.kind != Precondition::Kind::none) return no_revisions();
    return scale_agent(name, request);
  }
  virtual ApiResult<TenantSpec> put_tenant_if(std::uint32_t id, const TenantSpec& spec, const Precondition& pre) {
    if (pre.kind != Precondition::Kind::none) return no_revisions();
    return put_tenant(id, spec);
  }
  virtual ApiResult<Ok> delete_tenant_if(std::uint32_t id, const Precondition& pre) {
    if (pre.kind != Precondition::Kind::none) return no_revisions();
    return delete_tenant(id);
  }

  // GET /v1/fleet (docs/fleet.md): the fleet's members as etcd has them and this
  // appliance's view of etcd, as a JSON object; not_found when [fleet] is not configured.
  virtual ApiResult<std::string> fleet() {
    return api_error(ApiErrorCode::not_found,
                     "this appliance is not in a fleet: set [fleet] etcd_endpoints (docs/fleet.md)");
  }

  // GET /v1/top; unavailable while no data plane stats are mapped.
  virtual ApiResult<TopSnapshot> top() {
    return api_error(ApiErrorCode::unavailable, "this control plane serves no live counters");
  }

  // GET /v1/traces (recent first, filtered) and /v1/traces/{trace_id} (every traced request of
  // that trace; not_found when the store has none). unavailable without a trace store.
  virtual ApiResult<std::vector<TraceEntry>> list_traces(const TraceQuery& query) {
    (void)query;
    return api_error(ApiErrorCode::unavailable, "this control plane keeps no traces");
  }
  virtual ApiResult<std::vector<TraceEntry>> get_trace(const std::string& trace_id) {
    (void)trace_id;
    return api_error(ApiErrorCode::unavailable, "this control plane keeps no traces");
  }

  // Prometheus text exposition format (version 0.0.4) for GET /metrics.
  virtual ApiResult<std::string> metrics() = 0;

  // /v1/tuning and below, answered by the host tuning service (docs/tuning.md), which
  // chooses the status itself. unavailable when the daemon runs no tuning service.
  struct TuningReply {
    int status = 200;
    std::string body;  // JSON
  };
  virtual ApiResult<TuningReply> tuning(const std::string& method, const std::string& path, const std::string& query,
                                        const std::string& body) {
    (void)method, (void)path, (void)query, (void)body;
    return api_error(ApiErrorCode::unavailable, "this control plane runs no host tuning service");
  }
  // POST /v1/tuning/apply, conditional on the fleet's tuning profile revision when `pre` says
  // so (docs/fleet.md). In a fleet the profile goes to etcd and every appliance applies it.
  virtual ApiResult<TuningReply> tuning_apply(const std::string& body, const Precondition& pre) {
    if (pre.kind != Precondition::Kind::none) return no_revisions();
    return tuning("POST", "/v1/tuning/apply", "", body);
  }

 private:
  static ApiError no_revisions() {
    return api_error(ApiErrorCode::invalid_argument,
                     "this control plane keeps no revisions: send the write without If-Match or 'revision'");
  }
};

}  // namespace axon::controlplane
