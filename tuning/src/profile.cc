// Profile loading (see profile.h): find, parse, merge includes, then read every section
// strictly with the daemons' TableReader so a typo is an error with file:line, never a
// silently ignored setting.
#include "profile.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "axon/common/toml_reader.h"

namespace axon::tuning {
namespace {

constexpr const char* kExample = "tuning/profiles/latency.toml (docs/tuning.md lists every key)";
constexpr int kMaxIncludeDepth = 8;

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

Error<TuningError> invalid(const std::string& message) {
  return make_error(TuningError::invalid_profile, message);
}

// `over` on top of `base`: tables merge key by key, anything else is replaced.
void merge_into(toml::table& base, const toml::table& over) {
  for (const auto& [key, node] : over) {
    toml::node* existing = base.get(key.str());
    if (existing != nullptr && existing->is_table() && node.is_table()) {
      merge_into(*existing->as_table(), *node.as_table());
    } else {
      base.insert_or_assign(key.str(), node);
    }
  }
}

struct Loader {
  const std::vector<std::string>& dirs;
  std::vector<std::string> stack;     // paths being loaded (cycle detection)
  std::vector<std::string> included;  // names, in load order

  TResult<toml::table> load(const std::string& path) {
    if (std::find(stack.begin(), stack.end(), path) != stack.end()) {
      std::string chain;
      for (const auto& p : stack) chain += p + " -> ";
      return invalid("include cycle: " + chain + path + "; remove one of the includes");
    }
    if (stack.size() >= std::size_t(kMaxIncludeDepth)) {
      return invalid(path + ": includes nest deeper than " + std::to_string(kMaxIncludeDepth) + " profiles");
    }
    toml::table table;
    try {
      table = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      const auto& src = e.source();
      return invalid(path + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column) + ": " +
                     std::string(e.description()));
    }
    std::vector<std::string> parents;
    if (const toml::table* prof = table["profile"].as_table()) {
      if (const toml::node* inc = prof->get("include")) {
        if (auto s = inc->value_exact<std::string>()) {
          parents.push_back(*s);
        } else if (const toml::array* arr = inc->as_array()) {
          for (const auto& el : *arr) {
            auto s2 = el.value_exact<std::string>();
            if (!s2) return invalid(toml_config::where_of(path, el) + ": [profile] include must list profile names");
            parents.push_back(*s2);
          }
        } else {
          return invalid(toml_config::where_of(path, *inc) + ": [profile] include must be a name or a list of names");
        }
      }
    }
    if (parents.empty()) return table;

    stack.push_back(path);
    toml::table merged;
    for (const auto& parent : parents) {
      if (!valid_name(parent)) {
        return invalid(path + ": [profile] include '" + parent + "' is not a profile name (letters, digits, -_.)");
      }
      // The including profile's own directory first, so a set of profiles moves together.
      std::vector<std::string> search = {dir_of(path)};
      search.insert(search.end(), dirs.begin(), dirs.end());
      const std::string parent_path = find_profile(parent, search);
      if (parent_path.empty()) {
        return invalid(path + ": [profile] include '" + parent + "' not found in " + dir_of(path) +
                       " or the profile directories");
      }
      auto loaded = load(parent_path);
      if (!loaded) return loaded.error();
      included.push_back(parent);
      merge_into(merged, loaded.value());
    }
    stack.pop_back();
    // The parents' descriptions and includes are theirs, not this profile's.
    if (toml::table* mp = merged["profile"].as_table()) {
      mp->erase("include");
      mp->erase("description");
    }
    merge_into(merged, table);
    return merged;
  }
};

// An integer, a boolean, or a string "N", ">N", "<N" (tuned's raise/lower operators).
bool read_want(toml_config::TableReader& r, const char* key, std::optional<Want>& out) {
  const toml::node* node = r.node(key);
  if (node == nullptr) return false;
  Want want;
  if (auto i = node->value_exact<std::int64_t>()) {
    want.value = std::to_string(*i);
  } else if (auto b = node->value_exact<bool>()) {
    want.value = *b ? "1" : "0";
  } else if (auto s = node->value_exact<std::string>()) {
    std::string v = *s;
    if (!v.empty() && (v[0] == '>' || v[0] == '<')) {
      want.op = v[0] == '>' ? Want::Op::at_least : Want::Op::at_most;
      v.erase(0, 1);
      const bool numeric =
          !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }) && v.size() < 19;
      if (!numeric) {
        r.invalid(key, "'" + *s + "': > and < (only raise, only lower) need a non-negative integer after them");
        return false;
      }
    }
    if (v.empty() || v.find('\n') != std::string::npos) {
      r.invalid(key, "needs a value on one line");
      return false;
    }
    want.value = v;
  } else {
    r.invalid(key, "must be an integer, true/false, or a string (\">N\" only raises, \"<N\" only lowers)");
    return false;
  }
  out = want;
  return true;
}

bool read_role(toml_config::TableReader& r, const char* key, CpuRole& out) {
  std::string v;
  if (!r.read(key, v)) return false;
  if (v == "all") {
    out = CpuRole::all;
  } else if (v == "dataplane") {
    out = CpuRole::dataplane;
  } else if (v == "housekeeping") {
    out = CpuRole::housekeeping;
  } else {
    r.invalid(key, "must be \"all\", \"dataplane\" or \"housekeeping\"");
    return false;
  }
  return true;
}

// A queue count: an integer >= 1 or "dataplane" (as many as the data plane has cores).
void read_queues(toml_config::TableReader& r, const char* key, std::optional<std::string>& out) {
  const toml::node* node = r.node(key);
  if (node == nullptr) return;
  if (auto i = node->value_exact<std::int64_t>(); i && *i >= 1 && *i <= 4096) {
    out = std::to_string(*i);
  } else if (auto s = node->value_exact<std::string>(); s && *s == "dataplane") {
    out = *s;
  } else {
    r.invalid(key, "must be a queue count in [1, 4096] or \"dataplane\" (one queue per data plane core)");
  }
}

bool valid_sysctl_key(const std::string& key) {
  if (key.empty() || key.size() > 200 || key.front() == '.' || key.front() == '/') return false;
  if (key.find("..") != std::string::npos || key.find("//") != std::string::npos) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '/';
  });
}

bool valid_cgroup_path(const std::string& path) {
  if (path.empty() || path.front() == '/' || path.size() > 512) return false;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    auto slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    const std::string part = path.substr(pos, slash - pos);
    if (part.empty() || part == "." || part == "..") return false;
    pos = slash + 1;
  }
  return true;
}

TResult<Profile> read_profile(const std::string& path, const toml::table& root, Profile p) {
  using toml_config::TableReader;
  auto fail = [&](const TableReader& r) -> TResult<Profile> { return invalid(r.problem->message); };

  for (const auto& [key, node] : root) {
    static const std::set<std::string> kTables = {"profile", "sysctl", "memory", "cpu",           "irq",
                                                  "net",     "nic",    "cgroup", "kernel_cmdline"};
    if (!kTables.contains(std::string(key.str())) || !node.is_table()) {
      return invalid(toml_config::where_of(path, node) + ": unknown table '" + std::string(key.str()) +
                     "'; a profile has [profile], [sysctl], [memory], [cpu], [irq], [net], [nic], [cgroup] and "
                     "[kernel_cmdline]; see " +
                     kExample);
    }
  }
  static const toml::table kEmpty;
  auto section = [&](const char* name) -> const toml::table& {
    const toml::table* t = root[name].as_table();
    return t != nullptr ? *t : kEmpty;
  };

  {
    TableReader r(path, section("profile"), "profile", kExample);
    r.read("description", p.description);
    (void)r.node("include");  // resolved by the loader
    r.reject_unknown();
    if (r.problem) return fail(r);
  }
  {
    const toml::table& t = section("sysctl");
    TableReader r(path, t, "sysctl", kExample);
    for (const auto& [key, node] : t) {
      const std::string k(key.str());
      if (node.is_table()) {
        return invalid(toml_config::where_of(path, node) + ": [sysctl] '" + k +
                       "' is a table: quote sysctl names, like \"net.core.busy_poll\" = 50");
      }
      if (!valid_sysctl_key(k)) {
        return invalid(toml_config::where_of(path, node) + ": [sysctl] '" + k +
                       "' is not a sysctl name (like \"net.core.busy_poll\")");
      }
      std::optional<Want> want;
      if (!read_want(r, k.c_str(), want)) {
        if (r.problem) return fail(r);
        continue;
      }
      p.sysctls.emplace_back(k, *want);
    }
  }
  {
    TableReader r(path, section("memory"), "memory", kExample);
    read_want(r, "hugepages_2m_per_node", p.hugepages_2m_per_node);
    read_want(r, "hugepages_1g_per_node", p.hugepages_1g_per_node);
    r.read("transparent_hugepages", p.transparent_hugepages);
    r.read("transparent_hugepages_defrag", p.transparent_hugepages_defrag);
    r.reject_unknown();
    if (r.problem) return fail(r);
    for (const auto* w : {&p.hugepages_2m_per_node, &p.hugepages_1g_per_node}) {
      if (*w && !std::all_of((*w)->value.begin(), (*w)->value.end(), ::isdigit)) {
        return invalid(path + ": [memory] hugepage counts must be integers (or \">N\" to only raise)");
      }
    }
  }
  {
    TableReader r(path, section("cpu"), "cpu", kExample);
    r.read("governor", p.governor);
    read_role(r, "governor_cpus", p.governor_cpus);
    std::int64_t latency = -1;
    if (r.read("idle_max_latency_us", latency)) {
      if (latency < 0 || latency > 1000000) r.invalid("idle_max_latency_us", "must be in [0, 1000000] microseconds");
      p.idle_max_latency_us = int(latency);
    }
    read_role(r, "idle_cpus", p.idle_cpus);
    r.reject_unknown();
    if (r.problem) return fail(r);
  }
  {
    TableReader r(path, section("irq"), "irq", kExample);
    std::string steer;
    if (r.read("steer", steer)) {
      if (steer == "none") {
        p.irq_steer = IrqSteer::none;
      } else if (steer == "nic") {
        p.irq_steer = IrqSteer::nic;
      } else if (steer == "all") {
        p.irq_steer = IrqSteer::all;
      } else {
        r.invalid("steer", "must be \"none\", \"nic\" (the data plane interfaces' IRQs) or \"all\"");
      }
    }
    r.read("default_affinity", p.irq_default_affinity);
    r.reject_unknown();
    if (r.problem) return fail(r);
  }
  {
    TableReader r(path, section("net"), "net", kExample);
    r.read_list("interfaces", p.interfaces);
    read_want(r, "napi_defer_hard_irqs", p.napi_defer_hard_irqs);
    read_want(r, "gro_flush_timeout", p.gro_flush_timeout);
    r.read("threaded_napi", p.threaded_napi);
    r.reject_unknown();
    if (r.problem) return fail(r);
  }
  {
    TableReader r(path, section("nic"), "nic", kExample);
    read_queues(r, "combined_queues", p.combined_queues);
    read_queues(r, "rx_queues", p.rx_queues);
    read_queues(r, "tx_queues", p.tx_queues);
    read_want(r, "rx_usecs", p.rx_usecs);
    read_want(r, "rx_frames", p.rx_frames);
    read_want(r, "tx_usecs", p.tx_usecs);
    read_want(r, "tx_frames", p.tx_frames);
    r.read("adaptive_rx", p.adaptive_rx);
    r.read("adaptive_tx", p.adaptive_tx);
    r.reject_unknown();
    if (r.problem) return fail(r);
  }
  {
    TableReader r(path, section("cgroup"), "cgroup", kExample);
    for (const char* role : {"dataplane", "controlplane", "interactive", "background"}) {
      std::string group;
      if (!r.read(role, group)) continue;
      if (!valid_cgroup_path(group)) {
        r.invalid(role,
                  "must be a group path relative to the cgroup mount, like \"system.slice/axon-dataplane.service\"");
        break;
      }
      p.cpusets.emplace_back(role, group);
    }
    r.reject_unknown();
    if (r.problem) return fail(r);
  }
  {
    TableReader r(path, section("kernel_cmdline"), "kernel_cmdline", kExample);
    r.read_list("params", p.cmdline);
    r.reject_unknown();
    if (r.problem) return fail(r);
    for (const auto& param : p.cmdline) {
      if (param.empty() || param.find_first_of(" \t\n\"'") != std::string::npos) {
        return invalid(path + ": [kernel_cmdline] params: '" + param + "' must be one parameter without spaces");
      }
    }
  }
  return p;
}

}  // namespace

std::string Want::display() const {
  switch (op) {
    case Op::set: return value;
    case Op::at_least: return ">=" + value;
    case Op::at_most: return "<=" + value;
  }
  return value;
}

std::string find_profile(const std::string& name, const std::vector<std::string>& dirs) {
  if (name.find('/') != std::string::npos || (name.size() > 5 && name.ends_with(".toml"))) {
    return is_file(name) ? name : "";
  }
  for (const auto& dir : dirs) {
    const std::string path = dir + "/" + name + ".toml";
    if (is_file(path)) return path;
  }
  return "";
}

TResult<Profile> load_profile(const std::string& name, const std::vector<std::string>& dirs) {
  const bool is_path = name.find('/') != std::string::npos || name.ends_with(".toml");
  if (!is_path && !valid_name(name)) {
    return make_error(TuningError::profile_not_found,
                      "'" + name + "' is not a profile name (letters, digits, -_.); list them with axonctl tune list");
  }
  const std::string path = find_profile(name, dirs);
  if (path.empty()) {
    std::string where;
    for (const auto& d : dirs) where += (where.empty() ? "" : ", ") + d;
    return make_error(TuningError::profile_not_found, "no profile '" + name + "' (looked for " + name + ".toml in " +
                                                          (where.empty() ? "-" : where) +
                                                          "); list them with axonctl tune list, or pass --profile-dir");
  }
  Loader loader{dirs, {}, {}};
  auto table = loader.load(path);
  if (!table) return table.error();
  Profile p;
  p.path = path;
  p.name = name;
  if (is_path) {
    std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
    if (base.ends_with(".toml")) base.resize(base.size() - 5);
    p.name = base;
  }
  p.includes = loader.included;
  return read_profile(path, table.value(), std::move(p));
}

}  // namespace axon::tuning
