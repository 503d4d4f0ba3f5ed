// TOML -> ControlplaneConfig, strict: unknown keys, bad values and dangling references are
// errors with file:line and a fix (see deploy/axon-controlplane.toml).
#include "axon/controlplane/config.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "axon/common/model.h"
#include "axon/common/toml_reader.h"

namespace axon::controlplane {
namespace {

constexpr const char* kExample = "deploy/axon-controlplane.toml";
using toml_config::Problem;
using toml_config::TableReader;

ConfigError to_error(Problem::Kind kind) {
  switch (kind) {
    case Problem::Kind::missing_field: return ConfigError::missing_field;
    case Problem::Kind::unknown_key: return ConfigError::unknown_key;
    case Problem::Kind::invalid_value: break;
  }
  return ConfigError::invalid_value;
}

// "512M", "2G", "65536" or a plain integer -> bytes.
std::optional<std::uint64_t> parse_size(const toml::node& node) {
  if (auto v = node.value_exact<std::int64_t>()) {
    if (*v <= 0) return std::nullopt;
    return std::uint64_t(*v);
  }
  auto text = node.value_exact<std::string>();
  if (!text || text->empty()) return std::nullopt;
  std::size_t used = 0;
  unsigned long long number = 0;
  try {
    number = std::stoull(*text, &used);
  } catch (...) {
    return std::nullopt;
  }
  std::string suffix = text->substr(used);
  std::uint64_t scale = 1;
  if (suffix == "K" || suffix == "KiB") {
    scale = 1ull << 10;
  } else if (suffix == "M" || suffix == "MiB") {
    scale = 1ull << 20;
  } else if (suffix == "G" || suffix == "GiB") {
    scale = 1ull << 30;
  } else if (!suffix.empty()) {
    return std::nullopt;
  }
  if (number == 0) return std::nullopt;
  return std::uint64_t(number) * scale;
}

bool read_size(TableReader& reader, const char* key, std::optional<std::uint64_t>& out) {
  const toml::node* node = reader.node(key);
  if (node == nullptr) return false;
  auto bytes = parse_size(*node);
  if (!bytes) {
    reader.invalid(key, "must be a positive size in bytes, or a string like \"512M\" / \"2G\"");
    return false;
  }
  out = *bytes;
  return true;
}

bool read_ms(TableReader& reader, const char* key, std::chrono::milliseconds& out, std::uint32_t min_ms,
             std::uint32_t max_ms) {
  std::uint32_t value = 0;
  if (!reader.read(key, value)) return false;
  if (value < min_ms || value > max_ms) {
    reader.invalid(key, "must be between " + std::to_string(min_ms) + " and " + std::to_string(max_ms) + " ms");
    return false;
  }
  out = std::chrono::milliseconds(value);
  return true;
}

void read_api(TableReader& r, ApiSettings& api) {
  r.read("listen", api.listen);
  r.read("cert_file", api.cert_file);
  r.read("key_file", api.key_file);
  r.read("client_ca_file", api.client_ca_file);
  r.read("tokens_file", api.tokens_file);
  r.read("audit_log", api.audit_log);
  r.read("unix_socket", api.unix_socket);
  if (r.read("rate_per_second", api.rate_per_second) && !(api.rate_per_second > 0)) {
    r.invalid("rate_per_second", "must be > 0");
  }
  if (r.read("rate_burst", api.rate_burst) && api.rate_burst == 0) r.invalid("rate_burst", "must be >= 1");
  if (r.read("max_body_bytes", api.max_body_bytes) && api.max_body_bytes < 1024) {
    r.invalid("max_body_bytes", "must be >= 1024");
  }
  if (r.read("threads", api.threads) && (api.threads == 0 || api.threads > 64)) {
    r.invalid("threads", "must be between 1 and 64");
  }
  r.reject_unknown();
  if (!r.problem && !api.listen.empty() && (api.cert_file.empty() || api.key_file.empty())) {
    r.invalid("listen",
              "an HTTPS listener needs cert_file and key_file (deploy/install.sh generates a self-signed pair), or "
              "set listen = \"\" to serve only the unix socket");
  }
  if (!r.problem && api.listen.empty() && api.unix_socket.empty()) {
    r.invalid("listen", "both listen and unix_socket are empty: the API would be unreachable");
  }
}

void read_profile(TableReader& r, CgroupProfile& profile) {
  std::uint32_t value = 0;
  if (r.read("cpu_weight", value)) {
    if (value < 1 || value > 10000) r.invalid("cpu_weight", "must be between 1 and 10000 (cgroup v2 cpu.weight)");
    profile.cpu_weight = value;
  }
  if (r.read("cpu_max_percent", value)) {
    if (value < 1 || value > 100000) r.invalid("cpu_max_percent", "must be between 1 and 100000 (% of one CPU)");
    profile.cpu_max_percent = value;
  }
  r.read("cpuset_cpus", profile.cpuset_cpus);
  r.read("cpuset_mems", profile.cpuset_mems);
  read_size(r, "memory_max", profile.memory_max);
  read_size(r, "memory_high", profile.memory_high);
  std::uint64_t pids = 0;
  if (r.read("pids_max", pids)) {
    if (pids == 0) r.invalid("pids_max", "must be >= 1");
    profile.pids_max = pids;
  }
  r.reject_unknown();
}

void read_cgroups(TableReader& r, CgroupSettings& cg, const std::string& file) {
  r.read("enabled", cg.enabled);
  if (r.read("name", cg.name) &&
      (cg.name.empty() || cg.name.find('/') != std::string::npos || cg.name == "." || cg.name == "..")) {
    r.invalid("name", "must be a single directory name such as \"axon\"");
  }
  if (r.read("mode", cg.mode) && cg.mode != "auto" && cg.mode != "v2" && cg.mode != "v1") {
    r.invalid("mode", "must be \"auto\", \"v2\" or \"v1\"");
  }
  r.read("v2_root", cg.v2_root);
  if (const toml::table* weights = r.table("class_weight")) {
    TableReader w(file, *weights, "cgroups.class_weight", kExample);
    for (const char* cls : {"realtime", "standard", "batch"}) {
      std::uint32_t value = 0;
      if (w.read(cls, value)) {
        if (value < 1 || value > 10000) w.invalid(cls, "must be between 1 and 10000");
        cg.class_weight[cls] = value;
      }
    }
    w.reject_unknown();
    if (w.problem) r.problem = w.problem;
  }
  r.reject_unknown();
}

void read_pools(TableReader& r, PoolSettings& p) {
  read_ms(r, "scale_interval_ms", p.scale_interval, 50, 60000);
  if (r.node("scale_up_queue") != nullptr) {
    r.invalid("scale_up_queue",
              "was replaced by queue_delay_target_us: pools now grow on queueing delay (docs/scheduling.md); remove "
              "it");
  }
  if (r.read("queue_delay_target_us", p.queue_delay_target_us) &&
      (p.queue_delay_target_us < 1 || p.queue_delay_target_us > 60'000'000)) {
    r.invalid("queue_delay_target_us", "must be between 1 and 60000000 us (60 s)");
  }
  read_ms(r, "scale_up_sustain_ms", p.scale_up_sustain, 0, 3600000);
  read_ms(r, "scale_up_cooldown_ms", p.scale_up_cooldown, 0, 3600000);
  read_ms(r, "scale_down_idle_ms", p.scale_down_idle, 100, 86400000);
  read_ms(r, "scale_down_cooldown_ms", p.scale_down_cooldown, 0, 86400000);
  if (r.read("scale_down_delay_ratio", p.scale_down_delay_ratio) &&
      !(p.scale_down_delay_ratio >= 0 && p.scale_down_delay_ratio < 1)) {
    r.invalid("scale_down_delay_ratio",
              "must be at least 0 and below 1 (the shrink threshold is target * ratio, below the growth threshold)");
  }
  read_ms(r, "drain_timeout_ms", p.drain_timeout, 0, 600000);
  read_ms(r, "stop_grace_ms", p.stop_grace, 0, 600000);
  read_ms(r, "backoff_initial_ms", p.backoff_initial, 1, 600000);
  read_ms(r, "backoff_max_ms", p.backoff_max, 1, 3600000);
  read_ms(r, "stable_after_ms", p.stable_after, 1, 3600000);
  if (r.read("breaker_failures", p.breaker_failures) && p.breaker_failures == 0) {
    r.invalid("breaker_failures", "must be >= 1");
  }
  read_ms(r, "breaker_window_ms", p.breaker_window, 1, 3600000);
  read_ms(r, "breaker_cooldown_ms", p.breaker_cooldown, 1, 3600000);
  if (r.read("on_exit", p.on_exit) && p.on_exit != "keep" && p.on_exit != "stop") {
    r.invalid("on_exit", "must be \"keep\" (leave workers for the next control plane) or \"stop\"");
  }
  r.reject_unknown();
  if (!r.problem && p.backoff_max < p.backoff_initial) {
    r.invalid("backoff_max_ms", "must be >= backoff_initial_ms");
  }
}

void read_tuning(TableReader& r, TuningSettings& t) {
  r.read("profile", t.profile);
  r.read("apply_at_start", t.apply_at_start);
  read_ms(r, "verify_interval_ms", t.verify_interval, 0, 86400000);
  r.read("state_dir", t.state_dir);
  r.read("dataplane_config", t.dataplane_config);
  r.read_list("profile_dirs", t.profile_dirs);
  r.read("root", t.root);
  r.reject_unknown();
  if (!r.problem && t.apply_at_start && t.profile.empty()) {
    r.invalid("apply_at_start", "needs a profile to apply: set profile = \"latency\" (or another in /etc/axon/tuning)");
  }
}

// "host:port" or "[v6]:port" with a port of 1..65535.
bool valid_host_port(const std::string& text) {
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find("]:");
    if (close == std::string::npos || close < 2) return false;
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0 || text.find(':') != colon) return false;
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  const unsigned long value = std::stoul(port);
  return value >= 1 && value <= 65535;
}

void read_fleet(TableReader& r, FleetSettings& f) {
  r.read_list("etcd_endpoints", f.etcd_endpoints);
  r.read("appliance_id", f.appliance_id);
  r.read_list("advertise", f.advertise);
  r.read("api_url", f.api_url);
  r.read("lease_ttl_s", f.lease_ttl_s);
  r.read("prefix", f.prefix);
  read_ms(r, "request_timeout_ms", f.request_timeout, 100, 60000);
  r.reject_unknown();
  if (r.problem) return;
  for (const auto& e : f.etcd_endpoints) {
    if (e.rfind("http://", 0) != 0 || !valid_host_port(e.substr(7))) {
      r.invalid("etcd_endpoints", "'" + e + "' must be http://host:port (e.g. http://127.0.0.1:2379)");
      return;
    }
  }
  for (const auto& a : f.advertise) {
    if (!valid_host_port(a)) {
      r.invalid("advertise", "'" + a + "' must be address:port (IPv6 in brackets: \"[fd00::1]:7400\")");
      return;
    }
  }
  if (f.lease_ttl_s < 2 || f.lease_ttl_s > 3600) r.invalid("lease_ttl_s", "must be 2..3600 seconds");
  if (f.prefix.size() < 2 || f.prefix.front() != '/' || f.prefix.back() != '/') {
    r.invalid("prefix", "must start and end with '/' (e.g. \"/axon/\")");
  }
  if (!f.appliance_id.empty() && f.appliance_id.find_first_of("/ \t\n") != std::string::npos) {
    r.invalid("appliance_id", "must not contain '/' or white space");
  }
}

// [tracing] (docs/operations.md): sizes are positive, the endpoint an http(s) URL.
void read_tracing(TableReader& r, TracingSettings& t) {
  auto positive = [&](const char* key, std::uint32_t& out, std::uint32_t max) {
    if (r.read(key, out) && (out == 0 || out > max)) {
      r.invalid(key, "must be between 1 and " + std::to_string(max));
    }
  };
  positive("store_traces", t.store_traces, 1000000);
  if (r.read("otlp_endpoint", t.otlp_endpoint) && !t.otlp_endpoint.empty() && !parse_http_endpoint(t.otlp_endpoint)) {
    r.invalid("otlp_endpoint",
              "must be an http:// or https:// URL with a host, e.g. \"http://127.0.0.1:4318/v1/traces\" (the OTLP/HTTP "
              "collector's traces path), or \"\" for no export");
  }
  if (const toml::table* headers = r.table("otlp_headers")) {
    TableReader h(r.file(), *headers, "tracing.otlp_headers", kExample);
    for (const auto& [key, node] : *headers) {
      const std::string name(key.str());
      std::string value;
      if (!h.read(name.c_str(), value)) break;
      if (name.empty() || name.find_first_of(" :\r\n") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos) {
        h.invalid(name.c_str(), "must be an HTTP header name = \"value\" without spaces, ':' or line breaks");
        break;
      }
      t.otlp_headers[name] = value;
    }
    h.reject_unknown();
    if (h.problem) r.problem = h.problem;
  }
  r.read("otlp_ca_file", t.otlp_ca_file);
  read_ms(r, "otlp_timeout_ms", t.otlp_timeout, 1, 600000);
  positive("otlp_queue_spans", t.otlp_queue_spans, 10000000);
  positive("otlp_batch_spans", t.otlp_batch_spans, 100000);
  if (r.read("otlp_max_retries", t.otlp_max_retries) && t.otlp_max_retries > 100) {
    r.invalid("otlp_max_retries", "must be between 0 and 100");
  }
  if (r.read("service_name", t.service_name) && t.service_name.empty()) {
    r.invalid("service_name", "must not be empty (the OTLP resource's service.name)");
  }
  r.reject_unknown();
}

void read_dataplane(TableReader& r, DataplaneLinkSettings& d) {
  r.read("run_dir", d.run_dir);
  if (r.read_list("command", d.command) && !d.command.empty() && d.command[0].rfind('/', 0) != 0) {
    r.invalid("command", "command[0] must be an absolute path to axon-dataplane");
  }
  read_ms(r, "reconnect_interval_ms", d.reconnect_interval, 10, 60000);
  r.reject_unknown();
}

void read_tenant(TableReader& r, TenantSpec& t) {
  r.require("id");
  r.require("name");
  r.read("id", t.id);
  r.read("name", t.name);
  r.read("rate_pps", t.rate_pps);
  r.read("burst", t.burst);
  r.read_list("prefixes", t.prefixes);
  // Per-class limits and credits (docs/scheduling.md): pushed to the data plane as they are.
  for (auto [key, field] :
       {std::pair{"interactive_rate_pps", &TenantSpec::interactive_rate_pps},
        std::pair{"interactive_burst", &TenantSpec::interactive_burst},
        std::pair{"background_rate_pps", &TenantSpec::background_rate_pps},
        std::pair{"background_burst", &TenantSpec::background_burst},
        std::pair{"credits_max", &TenantSpec::credits_max}, std::pair{"credits_min", &TenantSpec::credits_min},
        std::pair{"credit_delay_target_us", &TenantSpec::credit_delay_target_us}}) {
    r.read(key, t.*field);
  }
  r.reject_unknown();
  if (!r.problem) {
    if (auto why = check_tenant(t); !why.empty()) r.invalid("id", why);
  }
}

// An agent's scheduling keys, the data plane's names; ranges are checked by check_agent.
void read_scheduling(TableReader& r, model::Scheduling& s) {
  std::string dispatch;
  if (r.read("dispatch", dispatch)) {
    if (auto parsed = model::parse_dispatch(dispatch)) {
      s.dispatch = parsed.value();
    } else {
      r.invalid("dispatch", parsed.message());
    }
  }
  model::for_each_scheduling_field(s, [&](const char* key, auto& field) { r.read(key, field); });
  std::string eviction;
  if (r.read("reply_cache_eviction", eviction)) {
    if (auto parsed = model::parse_reply_cache_eviction(eviction)) {
      s.reply_cache_eviction = parsed.value();
    } else {
      r.invalid("reply_cache_eviction", parsed.message());
    }
  }
}

void read_agent(TableReader& r, AgentSpec& a) {
  for (const char* key : {"name", "id", "tenant", "command"}) r.require(key);
  r.read("name", a.name);
  r.read("id", a.id);
  r.read("tenant", a.tenant);
  std::string priority;
  if (r.read("priority", priority)) {
    if (auto p = priority_from_name(priority)) {
      a.priority = *p;
    } else {
      r.invalid("priority", "must be \"realtime\", \"standard\" or \"batch\"");
    }
  }
  r.read_list("command", a.command);
  r.read("user", a.user);
  r.read("cgroup_profile", a.cgroup_profile);
  std::uint32_t min = a.pool.min;
  std::uint32_t max = a.pool.max;
  bool has_min = r.read("min_workers", min);
  bool has_max = r.read("max_workers", max);
  a.pool.min = min;
  a.pool.max = has_max ? max : (has_min ? std::max(min, a.pool.max) : max);
  read_scheduling(r, a.scheduling);
  r.reject_unknown();
}

}  // namespace

const char* priority_name(PriorityClass priority) noexcept {
  switch (priority) {
    case PriorityClass::realtime: return "realtime";
    case PriorityClass::standard: return "standard";
    case PriorityClass::batch: return "batch";
  }
  return "standard";
}

std::optional<PriorityClass> priority_from_name(const std::string& text) noexcept {
  if (text == "realtime") return PriorityClass::realtime;
  if (text == "standard") return PriorityClass::standard;
  if (text == "batch") return PriorityClass::batch;
  return std::nullopt;
}

namespace {

// Names become cgroup directories, file names and metric labels, so they are limited to a
// conservative alphabet. Hand-written rather than std::regex: the same rule, no allocation,
// and no regex engine in a daemon that parses untrusted REST bodies.
bool is_name(const std::string& text, std::size_t max_length, bool allow_upper, bool allow_dot) noexcept {
  if (text.empty() || text.size() > max_length) return false;
  auto is_alnum = [allow_upper](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (allow_upper && c >= 'A' && c <= 'Z');
  };
  if (!is_alnum(text[0])) return false;
  for (char c : text) {
    if (!is_alnum(c) && c != '_' && c != '-' && !(allow_dot && c == '.')) return false;
  }
  return true;
}

}  // namespace

std::string check_tenant(const TenantSpec& spec) {
  if (spec.id == 0) return "tenant id must be between 1 and 4294967295";
  if (!is_name(spec.name, 63, /*allow_upper=*/true, /*allow_dot=*/true)) {
    return "tenant name '" + spec.name + "' must match [A-Za-z0-9][A-Za-z0-9_.-]{0,62}";
  }
  if (spec.rate_pps > 0 && spec.burst == 0) return "tenant '" + spec.name + "' has rate_pps but no burst (>= 1)";
  if (auto why = model::tenant_limits_problem(spec); !why.empty()) return "tenant '" + spec.name + "': " + why;
  for (const auto& prefix : spec.prefixes) {
    if (auto parsed = model::parse_ip_prefix(prefix); !parsed) return "tenant '" + spec.name + "': " + parsed.message();
  }
  return {};
}

WorkerPolicy worker_policy(const ControlplaneConfig& config) {
  return WorkerPolicy{config.worker_user, config.worker_uids, config.allowed_worker_users,
                      config.allowed_worker_commands};
}

std::string check_agent(const AgentSpec& spec, const ControlplaneConfig& config) {
  if (!is_name(spec.name, 32, /*allow_upper=*/false, /*allow_dot=*/false)) {
    return "agent name '" + spec.name + "' must match [a-z0-9][a-z0-9_-]{0,31}";
  }
  if (spec.id == 0) return "agent '" + spec.name + "': id must be between 1 and 4294967295";
  if (spec.tenant == 0) return "agent '" + spec.name + "': tenant must be a tenant id (>= 1)";
  if (spec.command.empty() || spec.command[0].empty() || spec.command[0][0] != '/') {
    return "agent '" + spec.name + "': command[0] must be an absolute path to the worker binary";
  }
  if (spec.pool.max == 0) return "agent '" + spec.name + "': pool max must be >= 1";
  if (spec.pool.min > spec.pool.max) {
    return "agent '" + spec.name + "': pool min (" + std::to_string(spec.pool.min) + ") is above max (" +
           std::to_string(spec.pool.max) + ")";
  }
  if (spec.pool.max > 256) return "agent '" + spec.name + "': pool max must be <= 256";
  if (auto ok = model::check_scheduling(spec.scheduling, "agent '" + spec.name + "'"); !ok) return ok.message();
  if (spec.scheduling.reserved_interactive > spec.pool.max) {
    return "agent '" + spec.name + "': reserved_interactive (" + std::to_string(spec.scheduling.reserved_interactive) +
           ") is more than the pool's max (" + std::to_string(spec.pool.max) + "): reserve at most " +
           std::to_string(spec.pool.max) + " worker(s), raise max_workers (pool.max), or use " +
           "reserved_interactive_share";
  }
  if (!config.cgroups.profiles.contains(spec.cgroup_profile)) {
    std::string known;
    for (const auto& [name, profile] : config.cgroups.profiles) known += (known.empty() ? "" : ", ") + name;
    return "agent '" + spec.name + "': unknown cgroup_profile '" + spec.cgroup_profile + "' (configured: " + known +
           ")";
  }
  if (auto why = check_worker_identity(spec, worker_policy(config)); !why.empty()) return why;
  for (const auto& [key, value] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos) {
      return "agent '" + spec.name + "': environment variable name '" + key + "' is invalid";
    }
    if (key.rfind("AXON_", 0) == 0) {
      return "agent '" + spec.name + "': environment variable '" + key + "' is reserved (AXON_* is set by axon)";
    }
  }
  return {};
}

namespace {

void read_controlplane(TableReader& r, ControlplaneConfig& config) {
  r.read("state_dir", config.state_dir);
  r.read("log_dir", config.log_dir);
  r.read("worker_user", config.worker_user);
  std::string uids;
  if (r.read("worker_uids", uids) && !uids.empty()) {
    auto range = parse_uid_range(uids);
    if (range) {
      config.worker_uids = range.value();
    } else {
      r.invalid("worker_uids", range.message());
    }
  }
  r.read_list("allowed_worker_users", config.allowed_worker_users);
  r.read_list("allowed_worker_commands", config.allowed_worker_commands);
  r.reject_unknown();
}

// [cgroup_profiles.<name>]: one CgroupProfile each; the first bad one stops the read.
void read_cgroup_profiles(TableReader& r, const toml::table& table, const std::string& source_name,
                          ControlplaneConfig& config) {
  for (const auto& [key, node] : table) {
    std::string name(key.str());
    const toml::table* profile_table = r.table(name.c_str());
    if (profile_table == nullptr) break;
    TableReader p(source_name, *profile_table, "cgroup_profiles." + name, kExample);
    CgroupProfile profile;
    read_profile(p, profile);
    if (p.problem) {
      r.problem = p.problem;
      break;
    }
    config.cgroups.profiles[name] = profile;
  }
}

// One [[tenants]] entry; ids and names are unique.
void add_tenant(TableReader& r, ControlplaneConfig& config) {
  TenantSpec t;
  read_tenant(r, t);
  for (const auto& other : config.tenants) {
    if (!r.problem && (other.id == t.id || other.name == t.name)) {
      r.invalid("id", "tenant " + std::to_string(t.id) + " ('" + t.name + "') is defined twice");
    }
  }
  config.tenants.push_back(t);
}

// One [[agents]] entry: its tenant must exist, names and ids are unique, check_agent passes.
void add_agent(TableReader& r, ControlplaneConfig& config) {
  AgentSpec a;
  read_agent(r, a);
  if (r.problem) return;
  bool tenant_known = false;
  for (const auto& t : config.tenants) tenant_known |= t.id == a.tenant;
  if (!tenant_known) {
    r.invalid("tenant", "tenant " + std::to_string(a.tenant) + " is not defined in [[tenants]]");
    return;
  }
  for (const auto& other : config.agents) {
    if (other.name == a.name || other.id == a.id) {
      r.invalid("name", "agent '" + a.name + "' (id " + std::to_string(a.id) + ") is defined twice");
      return;
    }
  }
  if (auto why = check_agent(a, config); !why.empty()) {
    r.invalid("name", why);
    return;
  }
  config.agents.push_back(a);
}

}  // namespace

Result<ControlplaneConfig, ConfigError> parse_config(const std::string& text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    return make_error(ConfigError::parse_error, source_name + ":" + std::to_string(src.begin.line) + ":" +
                                                    std::to_string(src.begin.column) + ": " +
                                                    std::string(e.description()));
  }
  ControlplaneConfig config;
  config.source_path = source_name;
  TableReader top(source_name, root, "top level", kExample);
  std::optional<Problem> problem;
  auto section = [&](const char* key, auto&& reader_fn) {
    if (problem) return;
    if (const toml::table* table = top.table(key)) {
      TableReader r(source_name, *table, key, kExample);
      reader_fn(r, *table);
      if (r.problem) problem = r.problem;
    }
    if (top.problem) problem = top.problem;
  };
  section("controlplane", [&](TableReader& r, const toml::table&) { read_controlplane(r, config); });
  section("api", [&](TableReader& r, const toml::table&) { read_api(r, config.api); });
  section("cgroups", [&](TableReader& r, const toml::table&) { read_cgroups(r, config.cgroups, source_name); });
  section("cgroup_profiles",
          [&](TableReader& r, const toml::table& table) { read_cgroup_profiles(r, table, source_name, config); });
  section("pools", [&](TableReader& r, const toml::table&) { read_pools(r, config.pools); });
  section("dataplane", [&](TableReader& r, const toml::table&) { read_dataplane(r, config.dataplane); });
  section("tuning", [&](TableReader& r, const toml::table&) { read_tuning(r, config.tuning); });
  section("fleet", [&](TableReader& r, const toml::table&) { read_fleet(r, config.fleet); });
  section("tracing", [&](TableReader& r, const toml::table&) { read_tracing(r, config.tracing); });
  auto table_array = [&](const char* key, auto&& item_fn) {
    if (problem) return;
    const toml::array* array = top.table_array(key);
    if (top.problem) problem = top.problem;
    if (array == nullptr) return;
    for (const toml::node& node : *array) {
      TableReader r(source_name, *node.as_table(), key, kExample);
      item_fn(r);
      if (r.problem) {
        problem = r.problem;
        return;
      }
    }
  };
  table_array("tenants", [&](TableReader& r) { add_tenant(r, config); });
  table_array("agents", [&](TableReader& r) { add_agent(r, config); });
  if (!problem) {
    top.reject_unknown();
    problem = top.problem;
  }
  if (problem) return make_error(to_error(problem->kind), problem->message);
  return config;
}

Result<ControlplaneConfig, ConfigError> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return make_error(ConfigError::io_error, "cannot read " + path + ": " + std::strerror(errno) +
                                                 "; pass --config with the path of the control-plane TOML file");
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

}  // namespace axon::controlplane
