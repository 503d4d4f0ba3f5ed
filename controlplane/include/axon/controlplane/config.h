// The control plane's configuration: one TOML file (deploy/axon-controlplane.toml is the
// annotated example). Loading checks every value and cross-reference up front and names
// file:line and the fix for the first problem, so a bad file never starts a daemon.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "axon/common/result.h"
#include "axon/controlplane/model.h"
#include "axon/controlplane/worker_identity.h"

namespace axon::controlplane {

enum class ConfigError { io_error, parse_error, invalid_value, missing_field, unknown_key, unknown_reference };

struct ApiSettings {
  std::string listen = "127.0.0.1:9443";  // "" = no TCP listener (unix socket only)
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // non-empty: mTLS
  std::string tokens_file = "/etc/axon/tokens";
  std::string audit_log = "/var/log/axon/audit.log";
  std::string unix_socket = "/run/axon/api.sock";
  double rate_per_second = 20;
  std::uint32_t rate_burst = 40;
  std::uint32_t max_body_bytes = 1 << 20;
  std::uint32_t threads = 4;
};

// One [cgroup_profiles.<name>] table: limits for the tenant leaf a worker runs in.
struct CgroupProfile {
  std::optional<std::uint32_t> cpu_weight;
  std::optional<std::uint32_t> cpu_max_percent;
  std::optional<std::string> cpuset_cpus;
  std::optional<std::string> cpuset_mems;
  std::optional<std::uint64_t> memory_max;
  std::optional<std::uint64_t> memory_high;
  std::optional<std::uint64_t> pids_max;
};

struct CgroupSettings {
  bool enabled = true;
  std::string name = "axon";
  std::string mode = "auto";  // auto | v2 | v1
  std::string v2_root;        // "" = detect
  std::map<std::string, std::uint32_t> class_weight{{"realtime", 1000}, {"standard", 100}, {"batch", 20}};
  std::map<std::string, CgroupProfile> profiles{{"default", {}}};
};

// [tuning]: the host tuning service (axon::tuning, docs/tuning.md) run by the daemon.
struct TuningSettings {
  std::string profile;                               // "" = none: nothing is verified; /v1/tuning still answers
  bool apply_at_start = false;                       // apply `profile` when the daemon starts (a snapshot first)
  std::chrono::milliseconds verify_interval{60000};  // 0 = verify only at start
  std::string state_dir = "/var/lib/axon/tuning";    // snapshot.json and its lock
  std::string dataplane_config;                      // the data plane's config (cores, interface)
  std::vector<std::string> profile_dirs;             // searched for <profile>.toml; empty = the defaults
  // Every /proc, /sys and /etc path is taken below it: "/" on a host; a directory that mirrors
  // them in tests and sandboxes (the tuning tests' root-prefix sandbox).
  std::string root = "/";
};

struct PoolSettings {
  // The autoscaler (docs/scheduling.md, "Warm pools and autoscaling") samples every pool
  // this often.
  std::chrono::milliseconds scale_interval{500};
  // The queueing delay a pool is grown to stay under, for agents that set none of their own.
  std::uint64_t queue_delay_target_us = 1000;
  // Grow by one when the delay stays above the target this long; at most once per cooldown.
  std::chrono::milliseconds scale_up_sustain{1000};
  std::chrono::milliseconds scale_up_cooldown{2000};
  // Shrink by one (draining the idlest worker) once a worker has been idle this long and
  // the delay is at most target * scale_down_delay_ratio; at most once per cooldown after
  // any change.
  std::chrono::milliseconds scale_down_idle{30000};
  std::chrono::milliseconds scale_down_cooldown{10000};
  double scale_down_delay_ratio = 0.5;
  std::chrono::milliseconds drain_timeout{5000};
  std::chrono::milliseconds stop_grace{3000};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{10000};
  std::chrono::milliseconds stable_after{10000};
  std::uint32_t breaker_failures = 5;
  std::chrono::milliseconds breaker_window{30000};
  std::chrono::milliseconds breaker_cooldown{15000};
  // On SIGTERM: "keep" leaves workers running for the next control plane to take over
  // (the systemd default, KillMode=process); "stop" drains and stops them.
  std::string on_exit = "keep";
};

// The data plane this control plane drives.
struct DataplaneLinkSettings {
  std::string run_dir = "/run/axon";  // where control.sock, dataplane.stats and workers/ live
  // Non-empty: the control plane starts (and restarts) axon-dataplane itself with this
  // command, for single-host setups without systemd. Under systemd leave it empty: the
  // data plane is its own unit, so a control-plane restart never touches traffic.
  std::vector<std::string> command;
  std::chrono::milliseconds reconnect_interval{500};
};

// [fleet] (docs/fleet.md): several appliances as one service through etcd. With no
// etcd_endpoints the control plane is on its own, exactly as without this section.
struct FleetSettings {
  std::vector<std::string> etcd_endpoints;  // "http://host:2379"; empty = no fleet
  std::string appliance_id;                 // "" = the host name
  std::vector<std::string> advertise;       // AXP front doors clients use: "10.0.0.1:7400", "[fd00::1]:7400"
  std::string api_url;                      // "" = https://<api.listen>
  std::uint32_t lease_ttl_s = 10;           // the member key outlives a dead control plane this long
  std::string prefix = "/axon/";            // every key of this fleet lives under it
  std::chrono::milliseconds request_timeout{2000};
  bool enabled() const { return !etcd_endpoints.empty(); }
};

// [tracing]: the trace store (GET /v1/traces) and the OTLP/HTTP JSON exporter
// (docs/observability.md, "Traces").
struct TracingSettings {
  std::uint32_t store_traces = 4096;                // traced requests kept; the oldest is evicted
  std::string otlp_endpoint;                        // "" = no export; http://host:port/path or https://...
  std::map<std::string, std::string> otlp_headers;  // sent with every export request
  std::string otlp_ca_file;                         // https: CA bundle ("" = the system's)
  std::chrono::milliseconds otlp_timeout{2000};     // per export request
  std::uint32_t otlp_queue_spans = 8192;            // spans waiting; full drops the oldest
  std::uint32_t otlp_batch_spans = 512;             // spans per export request at most
  std::uint32_t otlp_max_retries = 3;               // per batch, with backoff; then dropped
  std::string service_name = "axon";                // OTLP resource attribute service.name
};

struct ControlplaneConfig {
  std::string source_path;
  std::string state_dir = "/var/lib/axon";  // registry (agents, tenants) survives restarts here
  std::string log_dir = "/var/log/axon";    // worker stdout/stderr: <log_dir>/workers/<id>.log
  std::string worker_user;                  // default user for workers ("" = root; refused unless allowed)
  // One uid per data plane slot from this range (gid = uid, no supplementary groups) for
  // agents without their own user; takes precedence over worker_user. See worker_identity.h.
  UidRange worker_uids;
  std::vector<std::string> allowed_worker_users;     // AgentSpec.user must be listed (or be worker_user)
  std::vector<std::string> allowed_worker_commands;  // command[0]: exact path, or a "/dir/" prefix
  ApiSettings api;
  CgroupSettings cgroups;
  PoolSettings pools;
  DataplaneLinkSettings dataplane;
  TuningSettings tuning;
  FleetSettings fleet;
  TracingSettings tracing;
  // Seed the registry on the very first start (no state file yet); afterwards the REST API
  // owns it.
  std::vector<TenantSpec> tenants;
  std::vector<AgentSpec> agents;
};

Result<ControlplaneConfig, ConfigError> load_config(const std::string& path);

// An http:// or https:// URL split for a client: host (IPv6 without brackets), port (the
// scheme's default when absent) and target (path and query, "/" when absent).
struct HttpEndpoint {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};
std::optional<HttpEndpoint> parse_http_endpoint(const std::string& url);
Result<ControlplaneConfig, ConfigError> parse_config(const std::string& text, const std::string& source_name);

// The worker identity rules of this config (worker_identity.h).
WorkerPolicy worker_policy(const ControlplaneConfig& config);

// Validation shared by the config loader and the REST API (which throws ApiError with the
// returned message). Empty string = valid.
std::string check_agent(const AgentSpec& spec, const ControlplaneConfig& config);
std::string check_tenant(const TenantSpec& spec);

const char* priority_name(PriorityClass priority) noexcept;
std::optional<PriorityClass> priority_from_name(const std::string& text) noexcept;

}  // namespace axon::controlplane
