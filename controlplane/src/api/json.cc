// Strict JSON readers and writers for the resource model (see json.h).
#include "api/json.h"

#include <string>
#include <utility>

#include "axon/common/json_reader.h"

namespace axon::controlplane::json_io {
namespace {

ApiError bad(std::string message) {
  return api_error(ApiErrorCode::invalid_argument, std::move(message));
}

// The reader's verdict: `out`, or its first error as invalid_argument.
template <typename T>
ApiResult<T> finish(JsonReader& r, T out) {
  r.finish();
  if (r.error()) return bad(*r.error());
  return out;
}

void read_pool(JsonReader& r, PoolSize& out) {
  r.optional("min", out.min);
  r.optional("max", out.max);
}

// An agent's scheduling fields, flat in its object (the data plane's names); ranges are
// checked by check_agent, which also knows the pool's max.
void read_scheduling(JsonReader& r, model::Scheduling& out) {
  std::string dispatch;
  if (r.optional("dispatch", dispatch)) {
    if (auto parsed = model::parse_dispatch(dispatch)) {
      out.dispatch = parsed.value();
    } else {
      r.fail("field 'dispatch' in " + r.what() + ": " + parsed.message());
    }
  }
  model::for_each_scheduling_field(out, [&](const char* key, auto& field) { r.optional(key, field); });
  std::string eviction;
  if (r.optional("reply_cache_eviction", eviction)) {
    if (auto parsed = model::parse_reply_cache_eviction(eviction)) {
      out.reply_cache_eviction = parsed.value();
    } else {
      r.fail("field 'reply_cache_eviction' in " + r.what() + ": " + parsed.message());
    }
  }
}

void read_agent(JsonReader& r, AgentSpec& out, const std::optional<std::string>& path_name) {
  if (path_name) {
    if (r.optional("name", out.name) && out.name != *path_name) {
      r.fail("field 'name' in " + r.what() + " is '" + out.name + "' but the path names '" + *path_name + "'");
    }
    out.name = *path_name;
  } else {
    r.required("name", out.name);
  }
  r.required("id", out.id);
  r.required("tenant", out.tenant);
  r.optional("priority", out.priority);
  r.required("command", out.command);
  r.optional("env", out.env);
  r.optional("user", out.user);
  r.nested("pool", false, [&](JsonReader& pool) { read_pool(pool, out.pool); });
  r.optional("cgroup_profile", out.cgroup_profile);
  read_scheduling(r, out.scheduling);
}

void read_dataplane(JsonReader& r, DataplaneStatus& out) {
  r.required("connected", out.connected);
  r.optional("pid", out.pid);
  r.optional("backend", out.backend);
  r.optional("mode", out.mode);
  r.optional("interface", out.interface);
  r.optional("ready", out.ready);
  r.optional("heartbeat_age_ms", out.heartbeat_age_ms);
  r.optional("table_version", out.table_version);
  r.optional("rx_frames", out.rx_frames);
  r.optional("requests", out.requests);
  r.optional("responses", out.responses);
  r.optional("drops", out.drops);
  r.optional("errors_sent", out.errors_sent);
  r.optional("busy_sent", out.busy_sent);
}

}  // namespace

ApiResult<json> parse_body(std::string_view body) {
  // nlohmann's parser keeps its own stack, but cap nesting anyway: no resource nests more
  // than 3 levels, and a megabyte of '[' should cost nothing.
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > 64) return bad("malformed JSON at byte " + std::to_string(i) + ": nesting deeper than 64");
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  // nlohmann reports where and why a parse failed only through its exception; it stops here.
  try {
    return json::parse(body.begin(), body.end());
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...";
    // keep the part after the bracketed id, which says what was expected.
    std::string detail = e.what();
    if (const auto pos = detail.find("] "); pos != std::string::npos) detail.erase(0, pos + 2);
    return bad("malformed JSON at byte " + std::to_string(e.byte) + ": " + detail);
  }
}

const char* to_string(PriorityClass value) {
  return enum_names(value).at(static_cast<std::size_t>(value));
}
const char* to_string(BreakerState value) {
  return enum_names(value).at(static_cast<std::size_t>(value));
}
const char* to_string(WorkerState value) {
  return enum_names(value).at(static_cast<std::size_t>(value));
}

json to_json(const PoolSize& value) {
  return json{{"min", value.min}, {"max", value.max}};
}

json to_json(const AgentSpec& value) {
  json env = json::object();
  for (const auto& [key, v] : value.env) env[key] = v;
  json out{{"name", value.name},
           {"id", value.id},
           {"tenant", value.tenant},
           {"priority", to_string(value.priority)},
           {"command", value.command},
           {"env", std::move(env)},
           {"user", value.user},
           {"pool", to_json(value.pool)},
           {"cgroup_profile", value.cgroup_profile},
           {"dispatch", model::to_string(value.scheduling.dispatch)}};
  model::for_each_scheduling_field(value.scheduling, [&](const char* key, const auto& field) { out[key] = field; });
  out["reply_cache_eviction"] = model::to_string(value.scheduling.reply_cache_eviction);
  return out;
}

json to_json(const AgentStatus& value) {
  json j{{"spec", to_json(value.spec)}, {"workers", value.workers},
         {"warm", value.warm},          {"breaker", to_string(value.breaker)},
         {"restarts", value.restarts},  {"crashes_in_window", value.crashes_in_window},
         {"last_exit", value.last_exit}};
  if (value.breaker_retry_in_ms) j["breaker_retry_in_ms"] = *value.breaker_retry_in_ms;
  return j;
}

json to_json(const WorkerInfo& value) {
  json j{{"id", value.id},
         {"agent", value.agent},
         {"slot", value.slot},
         {"pid", value.pid},
         {"state", to_string(value.state)},
         {"started_at_ms", value.started_at_ms},
         {"restarts", value.restarts},
         {"cgroup", value.cgroup},
         {"inflight", value.inflight},
         {"ring_depth", value.ring_depth},
         {"ring_depth_interactive", value.ring_depth_interactive},
         {"ring_depth_background", value.ring_depth_background},
         {"completed", value.completed},
         {"last_exit", value.last_exit},
         {"crash_streak", value.crash_streak},
         {"last_respawn_delay_ms", value.last_respawn_delay_ms}};
  if (value.retry_in_ms) j["retry_in_ms"] = *value.retry_in_ms;
  return j;
}

json to_json(const TenantSpec& value) {
  return json{{"id", value.id},
              {"name", value.name},
              {"rate_pps", value.rate_pps},
              {"burst", value.burst},
              {"prefixes", value.prefixes},
              {"interactive_rate_pps", value.interactive_rate_pps},
              {"interactive_burst", value.interactive_burst},
              {"background_rate_pps", value.background_rate_pps},
              {"background_burst", value.background_burst},
              {"credits_max", value.credits_max},
              {"credits_min", value.credits_min},
              {"credit_delay_target_us", value.credit_delay_target_us}};
}

json to_json(const RouteInfo& value) {
  // The REST names: the agent's id and name, and its live worker slots.
  return json{{"agent_id", value.id}, {"agent", value.name}, {"tenant", value.tenant}, {"slots", value.workers}};
}

json to_json(const DataplaneStatus& value) {
  return json{{"connected", value.connected},
              {"pid", value.pid},
              {"backend", value.backend},
              {"mode", value.mode},
              {"interface", value.interface},
              {"ready", value.ready},
              {"heartbeat_age_ms", value.heartbeat_age_ms},
              {"table_version", value.table_version},
              {"rx_frames", value.rx_frames},
              {"requests", value.requests},
              {"responses", value.responses},
              {"drops", value.drops},
              {"errors_sent", value.errors_sent},
              {"busy_sent", value.busy_sent}};
}

json to_json(const SystemStatus& value) {
  return json{{"version", value.version},
              {"uptime_ms", value.uptime_ms},
              {"cgroup_mode", value.cgroup_mode},
              {"dataplane", to_json(value.dataplane)},
              {"agents", value.agents},
              {"workers", value.workers},
              {"warm", value.warm},
              {"breakers_open", value.breakers_open},
              {"tenants", value.tenants}};
}

json to_json(const TopSnapshot& value) {
  json lcores = json::array();
  for (const auto& l : value.lcores) {
    lcores.push_back(json{{"lcore", l.lcore},
                          {"rx_frames", l.rx_frames},
                          {"requests", l.requests},
                          {"responses", l.responses},
                          {"busy_sent", l.busy_sent},
                          {"errors_sent", l.errors_sent},
                          {"drops", l.drops},
                          {"loops", l.loops},
                          {"idle_loops", l.idle_loops}});
  }
  json workers = json::array();
  for (const auto& w : value.workers) {
    workers.push_back(json{{"id", w.id},
                           {"agent", w.agent},
                           {"slot", w.slot},
                           {"class", w.klass},
                           {"state", to_string(w.state)},
                           {"ring_depth", w.ring_depth},
                           {"ring_depth_interactive", w.ring_depth_interactive},
                           {"ring_depth_background", w.ring_depth_background},
                           {"inflight", w.inflight},
                           {"completed", w.completed}});
  }
  json stages = json::array();
  for (const auto& s : value.stages) {
    json buckets = json::array();
    for (const auto& b : s.buckets) buckets.push_back(json::array({b.lower_ns, b.width_ns, b.count}));
    stages.push_back(json{{"stage", s.stage},
                          {"class", s.klass},
                          {"source", s.source},
                          {"count", s.count},
                          {"sum_ns", s.sum_ns},
                          {"buckets", std::move(buckets)}});
  }
  return json{{"sampled_at_ms", value.sampled_at_ms},
              {"dataplane", to_json(value.dataplane)},
              {"lcores", std::move(lcores)},
              {"drops", value.drops},
              {"busy", value.busy},
              {"workers", std::move(workers)},
              {"stages", std::move(stages)}};
}

json to_json(const ScaleRequest& value) {
  json j = json::object();
  if (value.min) j["min"] = *value.min;
  if (value.max) j["max"] = *value.max;
  return j;
}

json to_json(const ScaleEvent& value) {
  return json{{"at_ms", value.at_ms},         {"from", value.from},     {"to", value.to},
              {"direction", value.direction}, {"reason", value.reason}, {"delay_us", value.delay_us},
              {"target_us", value.target_us}, {"source", value.source}, {"worker", value.worker},
              {"message", value.message}};
}

json to_json(const CacheStatus& value) {
  return json{
      {"agent", value.agent},
      {"cacheable", value.cacheable},
      {"cache_ttl_ms", value.cache_ttl_ms},
      {"dataplane",
       {{"connected", value.dataplane_connected},
        {"scope", "all cacheable agents"},
        {"hits", value.hits},
        {"misses", value.misses},
        {"insertions", value.insertions},
        {"evictions", value.evictions},
        {"expirations", value.expirations},
        {"invalidations", value.invalidations},
        {"bytes", value.bytes},
        {"entries", value.entries},
        {"hit_latency_us",
         {{"count", value.hit_latency_count}, {"p50", value.hit_latency_p50_us}, {"p99", value.hit_latency_p99_us}}}}}};
}

json to_json(const ScalingStatus& value) {
  json decisions = json::array();
  for (const auto& d : value.decisions) decisions.push_back(to_json(d));
  json j{{"agent", value.agent},
         {"target", value.target},
         {"min", value.min},
         {"max", value.max},
         {"queue_delay_target_us", value.queue_delay_target_us},
         {"delay_source", value.delay_source},
         {"decisions", std::move(decisions)}};
  if (value.queue_delay_us) j["queue_delay_us"] = *value.queue_delay_us;
  return j;
}

ApiResult<AgentSpec> agent_spec_from_json(const json& j, const std::optional<std::string>& path_name) {
  JsonReader r(j, "agent");
  AgentSpec out;
  read_agent(r, out, path_name);
  return finish(r, std::move(out));
}

ApiResult<TenantSpec> tenant_spec_from_json(const json& j, const std::optional<std::uint32_t>& path_id) {
  JsonReader r(j, "tenant");
  TenantSpec out;
  if (path_id) {
    if (r.optional("id", out.id) && out.id != *path_id) {
      r.fail("field 'id' in tenant is " + std::to_string(out.id) + " but the path names " + std::to_string(*path_id));
    }
    out.id = *path_id;
  } else {
    r.required("id", out.id);
  }
  r.required("name", out.name);
  r.optional("rate_pps", out.rate_pps);
  r.optional("burst", out.burst);
  r.optional("prefixes", out.prefixes);
  r.optional("interactive_rate_pps", out.interactive_rate_pps);
  r.optional("interactive_burst", out.interactive_burst);
  r.optional("background_rate_pps", out.background_rate_pps);
  r.optional("background_burst", out.background_burst);
  r.optional("credits_max", out.credits_max);
  r.optional("credits_min", out.credits_min);
  r.optional("credit_delay_target_us", out.credit_delay_target_us);
  return finish(r, std::move(out));
}

ApiResult<ScaleRequest> scale_request_from_json(const json& j) {
  JsonReader r(j, "scale request");
  ScaleRequest out;
  r.optional("min", out.min);
  r.optional("max", out.max);
  r.finish();
  if (r.ok() && !out.min && !out.max) r.fail("scale request needs 'min', 'max' or both");
  return finish(r, out);
}

ApiResult<PoolSize> pool_size_from_json(const json& j) {
  JsonReader r(j, "pool");
  PoolSize out;
  read_pool(r, out);
  return finish(r, out);
}

ApiResult<AgentStatus> agent_status_from_json(const json& j) {
  JsonReader r(j, "agent status");
  AgentStatus out;
  r.nested("spec", true, [&](JsonReader& spec) { read_agent(spec, out.spec, std::nullopt); });
  r.optional("workers", out.workers);
  r.optional("warm", out.warm);
  r.optional("breaker", out.breaker);
  r.optional("restarts", out.restarts);
  r.optional("crashes_in_window", out.crashes_in_window);
  r.optional("breaker_retry_in_ms", out.breaker_retry_in_ms);
  r.optional("last_exit", out.last_exit);
  return finish(r, std::move(out));
}

ApiResult<WorkerInfo> worker_info_from_json(const json& j) {
  JsonReader r(j, "worker");
  WorkerInfo out;
  r.required("id", out.id);
  r.required("agent", out.agent);
  r.optional("slot", out.slot);
  r.optional("pid", out.pid);
  r.required("state", out.state);
  r.optional("started_at_ms", out.started_at_ms);
  r.optional("restarts", out.restarts);
  r.optional("cgroup", out.cgroup);
  r.optional("inflight", out.inflight);
  r.optional("ring_depth", out.ring_depth);
  r.optional("ring_depth_interactive", out.ring_depth_interactive);
  r.optional("ring_depth_background", out.ring_depth_background);
  r.optional("completed", out.completed);
  r.optional("last_exit", out.last_exit);
  r.optional("crash_streak", out.crash_streak);
  r.optional("last_respawn_delay_ms", out.last_respawn_delay_ms);
  r.optional("retry_in_ms", out.retry_in_ms);
  return finish(r, std::move(out));
}

ApiResult<RouteInfo> route_info_from_json(const json& j) {
  JsonReader r(j, "route");
  RouteInfo out;
  r.required("agent_id", out.id);
  r.required("agent", out.name);
  r.required("tenant", out.tenant);
  r.optional("slots", out.workers);
  return finish(r, std::move(out));
}

ApiResult<DataplaneStatus> dataplane_status_from_json(const json& j) {
  JsonReader r(j, "dataplane status");
  DataplaneStatus out;
  read_dataplane(r, out);
  return finish(r, std::move(out));
}

ApiResult<SystemStatus> system_status_from_json(const json& j) {
  JsonReader r(j, "status");
  SystemStatus out;
  r.required("version", out.version);
  r.optional("uptime_ms", out.uptime_ms);
  r.optional("cgroup_mode", out.cgroup_mode);
  r.nested("dataplane", true, [&](JsonReader& d) { read_dataplane(d, out.dataplane); });
  r.optional("agents", out.agents);
  r.optional("workers", out.workers);
  r.optional("warm", out.warm);
  r.optional("breakers_open", out.breakers_open);
  r.optional("tenants", out.tenants);
  return finish(r, std::move(out));
}

}  // namespace axon::controlplane::json_io
