// Strict JSON readers and writers for the resource model (see json.h).
#include "api/json.h"

#include <array>
#include <limits>
#include <map>
#include <set>

namespace axon::controlplane::json_io {
namespace {

// The nested readers below stop at the first bad field by throwing BadField; the public
// readers catch it and return it as ApiErrorCode::invalid_argument, so nothing outside
// this file sees an exception.
struct BadField {
  std::string message;
};

[[noreturn]] void bad(const std::string& message) {
  throw BadField{message};
}

template <typename T, typename F>
ApiResult<T> guarded(F&& read_it) {
  try {
    return read_it();
  } catch (const BadField& e) {
    return api_error(ApiErrorCode::invalid_argument, e.message);
  }
}

// Where a value sits: the resource ("agent") and the dotted field path ("pool.min").
struct Field {
  const std::string& what;
  std::string name;
};

std::string join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

[[noreturn]] void wrong_type(const Field& f, const char* expected) {
  bad("field '" + f.name + "' in " + f.what + " must be " + expected);
}

void read(const json& v, const Field& f, std::string& out) {
  if (!v.is_string()) wrong_type(f, "a string");
  out = v.get<std::string>();
}

void read(const json& v, const Field& f, bool& out) {
  if (!v.is_boolean()) wrong_type(f, "true or false");
  out = v.get<bool>();
}

template <typename Unsigned>
void read_unsigned(const json& v, const Field& f, Unsigned& out, const char* expected) {
  // The parser stores non-negative literals as unsigned; json built in code may hold them
  // signed. Both are fine if non-negative; floats never are.
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<std::int64_t>() < 0)) wrong_type(f, expected);
  const auto n = v.get<std::uint64_t>();
  if (n > std::numeric_limits<Unsigned>::max()) wrong_type(f, expected);
  out = static_cast<Unsigned>(n);
}

void read(const json& v, const Field& f, std::uint32_t& out) {
  read_unsigned(v, f, out, "an unsigned integer below 2^32");
}
void read(const json& v, const Field& f, std::uint64_t& out) {
  read_unsigned(v, f, out, "an unsigned integer below 2^64");
}

template <typename Signed>
void read_signed(const json& v, const Field& f, Signed& out, const char* expected) {
  if (v.is_number_unsigned()) {
    const auto n = v.get<std::uint64_t>();
    if (n > static_cast<std::uint64_t>(std::numeric_limits<Signed>::max())) wrong_type(f, expected);
    out = static_cast<Signed>(n);
    return;
  }
  if (!v.is_number_integer()) wrong_type(f, expected);
  const auto n = v.get<std::int64_t>();
  if (n < std::numeric_limits<Signed>::min() || n > std::numeric_limits<Signed>::max()) wrong_type(f, expected);
  out = static_cast<Signed>(n);
}

void read(const json& v, const Field& f, std::int32_t& out) {
  read_signed(v, f, out, "a 32-bit integer");
}
void read(const json& v, const Field& f, std::int64_t& out) {
  read_signed(v, f, out, "a 64-bit integer");
}

void read(const json& v, const Field& f, std::vector<std::string>& out) {
  if (!v.is_array()) wrong_type(f, "an array of strings");
  out.clear();
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::string s;
    read(v[i], Field{f.what, f.name + "[" + std::to_string(i) + "]"}, s);
    out.push_back(std::move(s));
  }
}

void read(const json& v, const Field& f, std::map<std::string, std::string>& out) {
  if (!v.is_object()) wrong_type(f, "an object of strings");
  out.clear();
  for (const auto& [key, value] : v.items()) {
    std::string s;
    read(value, Field{f.what, join(f.name, key)}, s);
    out.emplace(key, std::move(s));
  }
}

template <typename Enum, std::size_t N>
void read_enum(const json& v, const Field& f, Enum& out, const std::array<const char*, N>& names,
               const char* expected) {
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    for (std::size_t i = 0; i < N; ++i) {
      if (s == names[i]) {
        out = static_cast<Enum>(i);
        return;
      }
    }
  }
  wrong_type(f, expected);
}

constexpr std::array<const char*, 3> kPriorityNames{"realtime", "standard", "batch"};
constexpr std::array<const char*, 3> kBreakerNames{"closed", "open", "half_open"};
constexpr std::array<const char*, 6> kWorkerStateNames{"starting", "warm", "busy", "draining", "backoff", "stopped"};

void read(const json& v, const Field& f, PriorityClass& out) {
  read_enum(v, f, out, kPriorityNames, "one of \"realtime\", \"standard\", \"batch\"");
}
void read(const json& v, const Field& f, BreakerState& out) {
  read_enum(v, f, out, kBreakerNames, "one of \"closed\", \"open\", \"half_open\"");
}
void read(const json& v, const Field& f, WorkerState& out) {
  read_enum(v, f, out, kWorkerStateNames,
            "one of \"starting\", \"warm\", \"busy\", \"draining\", \"backoff\", \"stopped\"");
}

template <typename T>
void read(const json& v, const Field& f, std::optional<T>& out) {
  if (v.is_null()) {
    out.reset();
    return;
  }
  T value{};
  read(v, f, value);
  out = std::move(value);
}

// Reads one JSON object field by field; finish() rejects the fields nobody asked for.
class ObjectReader {
 public:
  ObjectReader(const json& j, const std::string& what, std::string prefix)
      : j_(j), what_(what), prefix_(std::move(prefix)) {
    if (!j_.is_object()) {
      if (prefix_.empty()) bad(what_ + " must be a JSON object");
      bad("field '" + prefix_ + "' in " + what_ + " must be an object");
    }
  }

  template <typename T>
  void required(const char* key, T& out) {
    known_.insert(key);
    const auto it = j_.find(key);
    if (it == j_.end()) bad("missing required field '" + join(prefix_, key) + "' in " + what_);
    read(*it, Field{what_, join(prefix_, key)}, out);
  }

  template <typename T>
  bool optional(const char* key, T& out) {
    known_.insert(key);
    const auto it = j_.find(key);
    if (it == j_.end()) return false;
    read(*it, Field{what_, join(prefix_, key)}, out);
    return true;
  }

  void finish() const {
    for (const auto& [key, value] : j_.items()) {
      if (known_.count(key) == 0) bad("unknown field '" + join(prefix_, key) + "' in " + what_);
    }
  }

  const std::string& what() const { return what_; }
  std::string nested(const char* key) const { return join(prefix_, key); }

 private:
  const json& j_;
  const std::string& what_;
  std::string prefix_;
  std::set<std::string> known_;
};

void read_object(const json& j, const std::string& what, const std::string& prefix, PoolSize& out) {
  ObjectReader r(j, what, prefix);
  r.optional("min", out.min);
  r.optional("max", out.max);
  r.finish();
}

void read(const json& v, const Field& f, PoolSize& out) {
  read_object(v, f.what, f.name, out);
}

void read_object(const json& j, const std::string& what, const std::string& prefix, AgentSpec& out,
                 const std::optional<std::string>& path_name) {
  ObjectReader r(j, what, prefix);
  if (path_name) {
    if (r.optional("name", out.name) && out.name != *path_name) {
      bad("field 'name' in " + what + " is '" + out.name + "' but the path names '" + *path_name + "'");
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
  r.optional("pool", out.pool);
  r.optional("cgroup_profile", out.cgroup_profile);
  r.finish();
}

void read(const json& v, const Field& f, AgentSpec& out) {
  read_object(v, f.what, f.name, out, std::nullopt);
}

void read_object(const json& j, const std::string& what, const std::string& prefix, DataplaneStatus& out) {
  ObjectReader r(j, what, prefix);
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
  r.finish();
}

void read(const json& v, const Field& f, DataplaneStatus& out) {
  read_object(v, f.what, f.name, out);
}

}  // namespace

ApiResult<json> parse_body(std::string_view body) {
  return guarded<json>([&]() -> json {
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
        if (++depth > 64) bad("malformed JSON at byte " + std::to_string(i) + ": nesting deeper than 64");
      } else if (c == '}' || c == ']') {
        --depth;
      }
    }
    try {
      return json::parse(body.begin(), body.end());
    } catch (const json::parse_error& e) {
      // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...";
      // keep the part after the bracketed id, which says what was expected.
      std::string detail = e.what();
      if (const auto pos = detail.find("] "); pos != std::string::npos) detail.erase(0, pos + 2);
      bad("malformed JSON at byte " + std::to_string(e.byte) + ": " + detail);
    }
  });
}

const char* to_string(PriorityClass value) {
  return kPriorityNames.at(static_cast<std::size_t>(value));
}
const char* to_string(BreakerState value) {
  return kBreakerNames.at(static_cast<std::size_t>(value));
}
const char* to_string(WorkerState value) {
  return kWorkerStateNames.at(static_cast<std::size_t>(value));
}

json to_json(const PoolSize& value) {
  return json{{"min", value.min}, {"max", value.max}};
}

json to_json(const AgentSpec& value) {
  json env = json::object();
  for (const auto& [key, v] : value.env) env[key] = v;
  return json{{"name", value.name},
              {"id", value.id},
              {"tenant", value.tenant},
              {"priority", to_string(value.priority)},
              {"command", value.command},
              {"env", std::move(env)},
              {"user", value.user},
              {"pool", to_json(value.pool)},
              {"cgroup_profile", value.cgroup_profile}};
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
  return json{{"id", value.id},
              {"agent", value.agent},
              {"slot", value.slot},
              {"pid", value.pid},
              {"state", to_string(value.state)},
              {"started_at_ms", value.started_at_ms},
              {"restarts", value.restarts},
              {"cgroup", value.cgroup},
              {"inflight", value.inflight},
              {"ring_depth", value.ring_depth},
              {"completed", value.completed}};
}

json to_json(const TenantSpec& value) {
  return json{{"id", value.id},
              {"name", value.name},
              {"rate_pps", value.rate_pps},
              {"burst", value.burst},
              {"prefixes", value.prefixes}};
}

json to_json(const RouteInfo& value) {
  return json{{"agent_id", value.agent_id}, {"agent", value.agent}, {"tenant", value.tenant}, {"slots", value.slots}};
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

json to_json(const ScaleRequest& value) {
  json j = json::object();
  if (value.min) j["min"] = *value.min;
  if (value.max) j["max"] = *value.max;
  return j;
}

ApiResult<AgentSpec> agent_spec_from_json(const json& j, const std::optional<std::string>& path_name) {
  return guarded<AgentSpec>([&]() -> AgentSpec {
    static const std::string what = "agent";
    AgentSpec out;
    read_object(j, what, "", out, path_name);
    return out;
  });
}

ApiResult<TenantSpec> tenant_spec_from_json(const json& j, const std::optional<std::uint32_t>& path_id) {
  return guarded<TenantSpec>([&]() -> TenantSpec {
    static const std::string what = "tenant";
    TenantSpec out;
    ObjectReader r(j, what, "");
    if (path_id) {
      if (r.optional("id", out.id) && out.id != *path_id) {
        bad("field 'id' in tenant is " + std::to_string(out.id) + " but the path names " + std::to_string(*path_id));
      }
      out.id = *path_id;
    } else {
      r.required("id", out.id);
    }
    r.required("name", out.name);
    r.optional("rate_pps", out.rate_pps);
    r.optional("burst", out.burst);
    r.optional("prefixes", out.prefixes);
    r.finish();
    return out;
  });
}

ApiResult<ScaleRequest> scale_request_from_json(const json& j) {
  return guarded<ScaleRequest>([&]() -> ScaleRequest {
    static const std::string what = "scale request";
    ScaleRequest out;
    ObjectReader r(j, what, "");
    r.optional("min", out.min);
    r.optional("max", out.max);
    r.finish();
    if (!out.min && !out.max) bad("scale request needs 'min', 'max' or both");
    return out;
  });
}

ApiResult<PoolSize> pool_size_from_json(const json& j) {
  return guarded<PoolSize>([&]() -> PoolSize {
    static const std::string what = "pool";
    PoolSize out;
    read_object(j, what, "", out);
    return out;
  });
}

ApiResult<AgentStatus> agent_status_from_json(const json& j) {
  return guarded<AgentStatus>([&]() -> AgentStatus {
    static const std::string what = "agent status";
    AgentStatus out;
    ObjectReader r(j, what, "");
    r.required("spec", out.spec);
    r.optional("workers", out.workers);
    r.optional("warm", out.warm);
    r.optional("breaker", out.breaker);
    r.optional("restarts", out.restarts);
    r.optional("crashes_in_window", out.crashes_in_window);
    r.optional("breaker_retry_in_ms", out.breaker_retry_in_ms);
    r.optional("last_exit", out.last_exit);
    r.finish();
    return out;
  });
}

ApiResult<WorkerInfo> worker_info_from_json(const json& j) {
  return guarded<WorkerInfo>([&]() -> WorkerInfo {
    static const std::string what = "worker";
    WorkerInfo out;
    ObjectReader r(j, what, "");
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
    r.optional("completed", out.completed);
    r.finish();
    return out;
  });
}

ApiResult<RouteInfo> route_info_from_json(const json& j) {
  return guarded<RouteInfo>([&]() -> RouteInfo {
    static const std::string what = "route";
    RouteInfo out;
    ObjectReader r(j, what, "");
    r.required("agent_id", out.agent_id);
    r.required("agent", out.agent);
    r.required("tenant", out.tenant);
    r.optional("slots", out.slots);
    r.finish();
    return out;
  });
}

ApiResult<DataplaneStatus> dataplane_status_from_json(const json& j) {
  return guarded<DataplaneStatus>([&]() -> DataplaneStatus {
    static const std::string what = "dataplane status";
    DataplaneStatus out;
    read_object(j, what, "", out);
    return out;
  });
}

ApiResult<SystemStatus> system_status_from_json(const json& j) {
  return guarded<SystemStatus>([&]() -> SystemStatus {
    static const std::string what = "status";
    SystemStatus out;
    ObjectReader r(j, what, "");
    r.required("version", out.version);
    r.optional("uptime_ms", out.uptime_ms);
    r.optional("cgroup_mode", out.cgroup_mode);
    r.required("dataplane", out.dataplane);
    r.optional("agents", out.agents);
    r.optional("workers", out.workers);
    r.optional("warm", out.warm);
    r.optional("breakers_open", out.breakers_open);
    r.optional("tenants", out.tenants);
    r.finish();
    return out;
  });
}

}  // namespace axon::controlplane::json_io
