// Rendering of the REST API's JSON as tables for people; --json bypasses all of this.
#include "tables.h"

#include <cstdio>

namespace axon::ctl {
namespace {

using nlohmann::json;

const json& field(const json& j, const char* key) {
  static const json null_value;
  if (!j.is_object()) return null_value;
  auto it = j.find(key);
  return it == j.end() ? null_value : *it;
}

// A scalar as text: strings as is, numbers in decimal, booleans as yes/no; else "-".
std::string text(const json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return s.empty() ? "-" : s;
  }
  if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number_float()) return v.dump();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return "-";
}

std::string text(const json& j, const char* key) {
  return text(field(j, key));
}

std::int64_t number(const json& j, const char* key, std::int64_t fallback = 0) {
  const json& v = field(j, key);
  if (v.is_number_integer()) return v.get<std::int64_t>();
  if (v.is_number_unsigned()) return std::int64_t(v.get<std::uint64_t>());
  return fallback;
}

std::string join(const json& array, const char* separator, const char* empty = "-") {
  if (!array.is_array() || array.empty()) return empty;
  std::string out;
  for (const json& item : array) {
    if (!out.empty()) out += separator;
    out += item.is_string() ? item.get<std::string>() : item.dump();
  }
  return out;
}

const json& list_field(const json& list, const char* key) {
  if (list.is_array()) return list;
  return field(list, key);
}

std::string plural(std::int64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (std::string& c : cells) {
    if (c.empty()) c = "-";
  }
  rows_.push_back(std::move(cells));
}

std::string Table::str() const {
  std::vector<std::size_t> widths(headers_.size());
  for (std::size_t i = 0; i < headers_.size(); ++i) widths[i] = headers_[i].size();
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      line += cells[i];
      if (i + 1 < cells.size()) line.append(widths[i] - cells[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  };
  emit(headers_);
  for (const auto& row : rows_) emit(row);
  return out;
}

std::string render_key_values(const std::vector<std::pair<std::string, std::string>>& items) {
  std::size_t width = 0;
  for (const auto& [k, v] : items) width = std::max(width, k.size());
  std::string out;
  for (const auto& [k, v] : items) {
    out += k;
    out.append(width - k.size() + 2, ' ');
    out += v.empty() ? "-" : v;
    out += '\n';
  }
  return out;
}

std::string format_duration_ms(std::int64_t ms) {
  if (ms < 0) return "-";
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 60'000) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.1fs", double(ms) / 1000.0);
    return buffer;
  }
  std::int64_t s = ms / 1000;
  std::int64_t d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
  std::string out;
  if (d > 0) return std::to_string(d) + "d " + std::to_string(h) + "h " + std::to_string(m) + "m";
  if (h > 0) out += std::to_string(h) + "h ";
  out += std::to_string(m) + "m " + std::to_string(sec) + "s";
  return out;
}

std::string render_status(const json& status) {
  const json& dp = field(status, "dataplane");
  std::string dataplane;
  if (field(dp, "connected").is_boolean() && field(dp, "connected").get<bool>()) {
    dataplane = "connected, pid " + text(dp, "pid") + ", " + text(dp, "backend") + " " + text(dp, "mode") + " on " +
                text(dp, "interface") + ", " + (field(dp, "ready") == true ? "ready" : "not ready");
    std::int64_t age = number(dp, "heartbeat_age_ms", -1);
    if (age >= 0) dataplane += ", heartbeat " + format_duration_ms(age) + " ago";
    dataplane += ", tables v" + text(dp, "table_version");
  } else {
    dataplane = "not connected";
  }
  std::string traffic = text(dp, "rx_frames") + " rx frames, " + text(dp, "requests") + " requests, " +
                        text(dp, "responses") + " responses, " + text(dp, "drops") + " drops, " +
                        text(dp, "errors_sent") + " errors, " + text(dp, "busy_sent") + " busy";
  std::int64_t open = number(status, "breakers_open");
  return render_key_values({
      {"version", text(status, "version")},
      {"uptime", format_duration_ms(number(status, "uptime_ms", -1))},
      {"cgroups", text(status, "cgroup_mode")},
      {"dataplane", dataplane},
      {"traffic", traffic},
      {"agents", text(status, "agents") + (open > 0 ? " (" + plural(open, "breaker", "breakers") + " open)" : "")},
      {"workers", text(status, "workers") + " (" + text(status, "warm") + " warm)"},
      {"tenants", text(status, "tenants")},
  });
}

namespace {
std::string breaker_text(const json& agent) {
  std::string breaker = text(agent, "breaker");
  std::int64_t retry = number(agent, "breaker_retry_in_ms", -1);
  if (breaker == "open" && retry >= 0) breaker += " (retry in " + format_duration_ms(retry) + ")";
  return breaker;
}
}  // namespace

std::string render_agents(const json& list) {
  const json& agents = list_field(list, "agents");
  if (!agents.is_array() || agents.empty()) return "no agents\n";
  Table table({"NAME", "ID", "TENANT", "PRIO", "WARM/MIN/MAX", "BREAKER", "RESTARTS"});
  for (const json& a : agents) {
    const json& spec = field(a, "spec");
    const json& pool = field(spec, "pool");
    table.add_row({text(spec, "name"), text(spec, "id"), text(spec, "tenant"), text(spec, "priority"),
                   text(a, "warm") + "/" + text(pool, "min") + "/" + text(pool, "max"), breaker_text(a),
                   text(a, "restarts")});
  }
  return table.str();
}

std::string render_agent(const json& agent) {
  const json& spec = field(agent, "spec");
  const json& pool = field(spec, "pool");
  std::string env;
  if (field(spec, "env").is_object()) {
    for (const auto& [k, v] : field(spec, "env").items()) {
      if (!env.empty()) env += ' ';
      env += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    }
  }
  return render_key_values({
      {"name", text(spec, "name")},
      {"revision", text(agent, "revision")},
      {"id", text(spec, "id")},
      {"tenant", text(spec, "tenant")},
      {"priority", text(spec, "priority")},
      {"command", join(field(spec, "command"), " ")},
      {"env", env},
      {"user", text(spec, "user")},
      {"pool", "min " + text(pool, "min") + ", max " + text(pool, "max")},
      {"cgroup profile", text(spec, "cgroup_profile")},
      {"scheduling", text(spec, "dispatch") + ", classes " +
                         (field(spec, "class_scheduling").is_boolean() && !spec["class_scheduling"].get<bool>()
                              ? std::string("off (FIFO)")
                              : std::string("on")) +
                         ", reserved " + text(spec, "reserved_interactive") + " / share " +
                         text(spec, "reserved_interactive_share") + ", delay target " +
                         text(spec, "queue_delay_target_us") + " us, high water " + text(spec, "high_water")},
      {"workers", text(agent, "workers") + " (" + text(agent, "warm") + " warm)"},
      {"breaker", breaker_text(agent) + ", " + text(agent, "crashes_in_window") + " crash(es) in window"},
      {"restarts", text(agent, "restarts")},
      {"last exit", text(agent, "last_exit")},
  });
}

std::string render_scaling(const json& scaling) {
  const json& delay = field(scaling, "queue_delay_us");
  std::string out = render_key_values({
      {"agent", text(scaling, "agent")},
      {"pool", text(scaling, "target") + " (min " + text(scaling, "min") + ", max " + text(scaling, "max") + ")"},
      {"queueing delay",
       (delay.is_number() ? text(scaling, "queue_delay_us") + " us" : std::string("not measured yet")) + " (" +
           text(scaling, "delay_source") + "), target " + text(scaling, "queue_delay_target_us") + " us"},
  });
  const json& decisions = field(scaling, "decisions");
  if (!decisions.is_array() || decisions.empty()) return out + "no scaling decisions yet\n";
  Table table({"AT_MS", "FROM", "TO", "REASON", "DELAY_US", "TARGET_US", "MESSAGE"});
  for (const json& d : decisions) {
    table.add_row({text(d, "at_ms"), text(d, "from"), text(d, "to"), text(d, "reason"), text(d, "delay_us"),
                   text(d, "target_us"), text(d, "message")});
  }
  return out + table.str();
}

std::string render_workers(const json& list) {
  const json& workers = list_field(list, "workers");
  if (!workers.is_array() || workers.empty()) return "no workers\n";
  Table table({"ID", "AGENT", "SLOT", "PID", "STATE", "INFLIGHT", "RESTARTS"});
  for (const json& w : workers) {
    std::string pid = number(w, "pid") > 0 ? text(w, "pid") : "-";
    table.add_row({text(w, "id"), text(w, "agent"), text(w, "slot"), pid, text(w, "state"), text(w, "inflight"),
                   text(w, "restarts")});
  }
  return table.str();
}

namespace {
std::string rate_text(const json& t) {
  return number(t, "rate_pps") == 0 ? "unlimited" : text(t, "rate_pps") + "/s";
}
}  // namespace

std::string render_tenants(const json& list) {
  const json& tenants = list_field(list, "tenants");
  if (!tenants.is_array() || tenants.empty()) return "no tenants\n";
  Table table({"ID", "NAME", "RATE", "BURST", "PREFIXES"});
  for (const json& t : tenants) {
    table.add_row({text(t, "id"), text(t, "name"), rate_text(t), text(t, "burst"), join(field(t, "prefixes"), ",")});
  }
  return table.str();
}

namespace {
// "500/s, burst 50" or "no class limit" for the interactive_/background_ fields.
std::string class_limit_text(const json& t, const std::string& cls) {
  const std::string rate = cls + "_rate_pps";
  if (number(t, rate.c_str()) == 0) return "no class limit";
  return text(t, rate.c_str()) + "/s, burst " + text(t, (cls + "_burst").c_str());
}
std::string credits_text(const json& t) {
  if (number(t, "credits_max") == 0) return "off";
  const std::string target =
      number(t, "credit_delay_target_us") == 0 ? "the data plane's" : text(t, "credit_delay_target_us") + " us";
  return text(t, "credits_min") + ".." + text(t, "credits_max") + ", delay target " + target;
}
}  // namespace

std::string render_tenant(const json& t) {
  return render_key_values({
      {"id", text(t, "id")},
      {"name", text(t, "name")},
      {"revision", text(t, "revision")},
      {"rate", rate_text(t)},
      {"burst", text(t, "burst")},
      {"prefixes", join(field(t, "prefixes"), ", ")},
      {"interactive", class_limit_text(t, "interactive")},
      {"background", class_limit_text(t, "background")},
      {"credits", credits_text(t)},
  });
}

std::string render_routes(const json& list) {
  const json& routes = list_field(list, "routes");
  if (!routes.is_array() || routes.empty()) return "no routes\n";
  Table table({"AGENT_ID", "AGENT", "TENANT", "SLOTS"});
  for (const json& r : routes) {
    table.add_row({text(r, "agent_id"), text(r, "agent"), text(r, "tenant"), join(field(r, "slots"), ",")});
  }
  return table.str();
}

}  // namespace axon::ctl
