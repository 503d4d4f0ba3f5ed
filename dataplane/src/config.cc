// TOML -> DataplaneConfig with strict checking: unknown keys are errors (a typo must not
// silently fall back to a default), and every error carries file:line and a fix.
#include "axon/dataplane/config.h"

#include <arpa/inet.h>
#include <toml++/toml.h>

#include <bit>
#include <fstream>
#include <set>
#include <sstream>

#include "axon/dataplane/stats.h"

namespace axon::dataplane {
namespace {

constexpr std::uint32_t kMaxWorkerSlots = std::uint32_t(kMaxWorkers);  // the stats file's bound

Error<ConfigError> fail(ConfigError code, const std::string& where, const std::string& what) {
  return make_error(code, where + ": " + what);
}

std::string where_of(const std::string& file, const toml::node& node) {
  const auto& src = node.source();
  return file + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

// Walks one table, reading known keys and rejecting any other.
class TableReader {
 public:
  TableReader(const std::string& file, const toml::table& table, std::string name)
      : file_(file), table_(table), name_(std::move(name)) {}

  std::optional<Error<ConfigError>> error;

  template <typename T>
  bool read(const char* key, T& out) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr || error) return false;
    if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = node->value_exact<std::string>()) {
        out = *v;
        return true;
      }
      return wrong(*node, key, "a string");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (auto v = node->value_exact<bool>()) {
        out = *v;
        return true;
      }
      return wrong(*node, key, "true or false");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (auto v = node->value<double>()) {  // 1 and 1.0 both read
        out = T(*v);
        return true;
      }
      return wrong(*node, key, "a number");
    } else {
      auto v = node->value_exact<std::int64_t>();
      if (!v || *v < std::int64_t(std::numeric_limits<T>::min()) || *v > std::int64_t(std::numeric_limits<T>::max())) {
        return wrong(*node, key,
                     "an integer in [" + std::to_string(std::numeric_limits<T>::min()) + ", " +
                         std::to_string(std::numeric_limits<T>::max()) + "]");
      }
      out = T(*v);
      return true;
    }
  }

  template <typename T>
  bool read_list(const char* key, std::vector<T>& out) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (node == nullptr || error) return false;
    const toml::array* array = node->as_array();
    if (array == nullptr) return wrong(*node, key, "an array");
    std::vector<T> values;
    for (const toml::node& element : *array) {
      if constexpr (std::is_same_v<T, std::string>) {
        auto v = element.value_exact<std::string>();
        if (!v) return wrong(element, key, "an array of strings");
        values.push_back(*v);
      } else {
        auto v = element.value_exact<std::int64_t>();
        if (!v || *v < std::int64_t(std::numeric_limits<T>::min()) ||
            *v > std::int64_t(std::numeric_limits<T>::max())) {
          return wrong(element, key, "an array of integers in range");
        }
        values.push_back(T(*v));
      }
    }
    out = std::move(values);
    return true;
  }

  void reject_unknown() {
    if (error) return;
    for (const auto& [key, node] : table_) {
      if (!seen_.contains(std::string(key.str()))) {
        error = fail(ConfigError::unknown_key, where_of(file_, node),
                     "unknown key '" + std::string(key.str()) + "' in [" + name_ +
                         "]; check the spelling against deploy/axon-dataplane.toml");
        return;
      }
    }
  }

  void invalid(const char* key, const std::string& what) {
    if (error) return;
    const toml::node* node = table_.get(key);
    // An absent key (e.g. a burst missing beside rate_pps) is reported at its table's line.
    std::string where = node != nullptr ? where_of(file_, *node) : where_of(file_, table_);
    error = fail(ConfigError::invalid_value, where, "[" + name_ + "] " + key + ": " + what);
  }

  void require(const char* key) {
    if (!error && table_.get(key) == nullptr) {
      error = fail(ConfigError::missing_field, where_of(file_, table_),
                   "[" + name_ + "] needs '" + key + "'; see deploy/axon-dataplane.toml");
    }
  }

 private:
  bool wrong(const toml::node& node, const char* key, const std::string& expected) {
    error = fail(ConfigError::invalid_value, where_of(file_, node), "[" + name_ + "] " + key + " must be " + expected);
    return false;
  }

  const std::string& file_;
  const toml::table& table_;
  std::string name_;
  std::set<std::string> seen_;
};

// An [[agents]] entry's scheduling knobs (model::Scheduling), each optional, checked by the
// model's one range check (the message names the knob and its range).
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
  if (r.error) return;
  if (auto checked = model::check_scheduling(s, ""); !checked) {
    // "<knob>: <fix>", reported at the knob's line.
    const std::string& m = checked.message();
    const std::size_t colon = m.find(':');
    r.invalid(m.substr(0, colon).c_str(), m.substr(colon + 2));
  }
}

// Appends the [dataplane] worker_slots generic slots after the named [[workers]].
ConfigResult<Ok> add_generic_slots(DataplaneConfig& config, std::set<std::string>& worker_names,
                                   const std::string& file) {
  for (std::uint32_t i = 0; i < config.worker_slots; ++i) {
    WorkerConfig slot{generic_slot_name(i)};
    if (!worker_names.insert(slot.name).second) {
      return fail(ConfigError::invalid_value, file,
                  "[[workers]] declares '" + slot.name + "', a name worker_slots generates; rename that worker");
    }
    config.workers.push_back(std::move(slot));
  }
  if (config.workers.empty()) {
    return fail(ConfigError::missing_field, file, "declare [[workers]] entries or set [dataplane] worker_slots = N");
  }
  if (config.workers.size() > kMaxWorkerSlots) {
    return fail(ConfigError::invalid_value, file,
                "at most " + std::to_string(kMaxWorkerSlots) + " worker slots ([[workers]] plus worker_slots)");
  }
  return Ok{};
}

ConfigResult<DataplaneConfig> build(const toml::table& root, const std::string& file) {
  DataplaneConfig config;
  config.source_path = file;
  std::optional<Error<ConfigError>> error;
  auto check = [&](TableReader& reader) {
    reader.reject_unknown();
    if (reader.error && !error) error = reader.error;
    return !error.has_value();
  };

  static const std::set<std::string> sections = {
      "dataplane", "xdp",        "uring",     "dpdk",           "shm",  "credits", "tenants", "workers",
      "agents",    "reassembly", "telemetry", "response_cache", "dedup"};
  for (const auto& [key, node] : root) {
    if (!sections.contains(std::string(key.str()))) {
      return fail(ConfigError::unknown_key, where_of(file, node),
                  "unknown section '" + std::string(key.str()) +
                      "'; expected dataplane, xdp, uring, dpdk, shm, credits, reassembly, response_cache, "
                      "dedup, telemetry, tenants, workers or agents");
    }
  }

  const toml::table* dp = root["dataplane"].as_table();
  if (dp == nullptr) return fail(ConfigError::missing_field, file, "missing [dataplane] section");
  {
    TableReader r(file, *dp, "dataplane");
    r.require("interface");
    r.read("interface", config.interface);
    r.read("backend", config.backend);
    r.read_list("queues", config.queues);
    r.read_list("cores", config.cores);
    std::string numa;
    if (dp->get("numa_node") != nullptr && dp->get("numa_node")->is_string()) {
      r.read("numa_node", numa);
      if (!r.error && numa != "auto") r.invalid("numa_node", "use \"auto\" or a node number");
    } else {
      r.read("numa_node", config.numa_node);
    }
    r.read_list("ports", config.ports);
    r.read("run_dir", config.run_dir);
    r.read("drain_timeout_ms", config.drain_timeout_ms);
    r.read("busy_retry_after_us", config.busy_retry_after_us);
    r.read("housekeeping_us", config.housekeeping_us);
    r.read("worker_stall_timeout_ms", config.worker_stall_timeout_ms);
    r.read("worker_slots", config.worker_slots);
    r.read_list("control_uids", config.control_uids);
    if (config.worker_slots > kMaxWorkerSlots) {
      r.invalid("worker_slots", "at most " + std::to_string(kMaxWorkerSlots) + " worker slots in all");
    }
    if (config.backend != "auto" && config.backend != "xdp" && config.backend != "uring" && config.backend != "dpdk") {
      r.invalid("backend", "use \"auto\", \"xdp\", \"uring\" or \"dpdk\"");
    }
    if (config.queues.empty()) r.invalid("queues", "list at least one receive queue");
    if (config.cores.size() != config.queues.size()) {
      r.invalid("cores", "give exactly one core per queue (" + std::to_string(config.queues.size()) + " queues)");
    }
    if (config.ports.empty() || config.ports.size() > 4) r.invalid("ports", "list 1 to 4 UDP ports");
    for (auto port : config.ports) {
      if (port == 0) r.invalid("ports", "port 0 is not a valid UDP port");
    }
    if (config.interface.empty() || config.interface.size() > 15) r.invalid("interface", "must be 1-15 characters");
    if (config.housekeeping_us == 0) r.invalid("housekeeping_us", "must be positive");
    if (!check(r)) return *error;
  }

  if (const toml::table* xdp = root["xdp"].as_table()) {
    TableReader r(file, *xdp, "xdp");
    std::string zc = "auto";
    r.read("zero_copy", zc);
    if (zc == "auto") {
      config.xdp.zero_copy = ZeroCopy::automatic;
    } else if (zc == "on") {
      config.xdp.zero_copy = ZeroCopy::required;
    } else if (zc == "off") {
      config.xdp.zero_copy = ZeroCopy::disabled;
    } else {
      r.invalid("zero_copy", "use \"auto\", \"on\" or \"off\"");
    }
    r.read("frame_size", config.xdp.frame_size);
    r.read("frames", config.xdp.frames);
    r.read("busy_poll", config.xdp.busy_poll);
    r.read("enforce_allowlist", config.xdp.enforce_allowlist);
    r.read("enforce_rate", config.xdp.enforce_rate);
    r.read("enforce_credits", config.xdp.enforce_credits);
    r.read("rx_stamp", config.xdp.rx_stamp);
    if (config.xdp.frame_size != 2048 && config.xdp.frame_size != 4096) r.invalid("frame_size", "use 2048 or 4096");
    if (config.xdp.frames < 256 || !std::has_single_bit(config.xdp.frames)) {
      r.invalid("frames", "use a power of two >= 256");
    }
    if (!check(r)) return *error;
  }

  if (const toml::table* uring = root["uring"].as_table()) {
    TableReader r(file, *uring, "uring");
    UringSettings& u = config.uring;
    r.read("bind_address", u.bind_address);
    r.read("bind_to_device", u.bind_to_device);
    r.read("buffers", u.buffers);
    r.read("buffer_size", u.buffer_size);
    r.read("tx_frames", u.tx_frames);
    r.read("frame_size", u.frame_size);
    r.read("ring_entries", u.ring_entries);
    r.read("socket_buffer", u.socket_buffer);
    unsigned char addr[16];
    if (!u.bind_address.empty() && inet_pton(AF_INET, u.bind_address.c_str(), addr) != 1 &&
        inet_pton(AF_INET6, u.bind_address.c_str(), addr) != 1) {
      r.invalid("bind_address", "use \"\" (every address) or one IPv4/IPv6 address of this host");
    }
    if (u.buffers < 64 || u.buffers > 32768 || !std::has_single_bit(u.buffers)) {
      r.invalid("buffers", "use a power of two in [64, 32768]");
    }
    if (u.buffer_size < 512 || u.buffer_size > 65536) r.invalid("buffer_size", "use 512 to 65536 bytes");
    if (u.frame_size < 512 || u.frame_size > 4096) r.invalid("frame_size", "use 512 to 4096 bytes");
    if (u.tx_frames < 64 || u.tx_frames > 65536) r.invalid("tx_frames", "use 64 to 65536 frames");
    if (u.ring_entries < 64 || u.ring_entries > 32768 || !std::has_single_bit(u.ring_entries)) {
      r.invalid("ring_entries", "use a power of two in [64, 32768]");
    }
    if (!check(r)) return *error;
  }

  if (const toml::table* dpdk = root["dpdk"].as_table()) {
    TableReader r(file, *dpdk, "dpdk");
    DpdkSettings& d = config.dpdk;
    r.read_list("allow", d.allow);
    r.read_list("vdevs", d.vdevs);
    r.read("socket_mem", d.socket_mem);
    r.read("in_memory", d.in_memory);
    r.read("file_prefix", d.file_prefix);
    r.read("mbufs", d.mbufs);
    r.read("mbuf_cache", d.mbuf_cache);
    r.read("rx_descriptors", d.rx_descriptors);
    r.read("tx_descriptors", d.tx_descriptors);
    r.read("telemetry", d.telemetry);
    r.read_list("eal_args", d.eal_args);
    if (d.socket_mem.find_first_not_of("0123456789,") != std::string::npos || d.socket_mem.starts_with(',') ||
        d.socket_mem.ends_with(',') || d.socket_mem.find(",,") != std::string::npos) {
      r.invalid("socket_mem", "use MiB per NUMA node separated by commas, e.g. \"256\" or \"256,256\"");
    }
    if (d.file_prefix.empty() || d.file_prefix.size() > 64 ||
        d.file_prefix.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
            std::string::npos) {
      r.invalid("file_prefix", "use 1-64 characters from [A-Za-z0-9_-]");
    }
    for (const std::string& v : d.vdevs) {
      if (v.empty() || v.find_first_of(" \t") != std::string::npos) {
        r.invalid("vdevs",
                  "'" + v + "' is not a vdev: use \"<driver><n>[,key=value...]\", e.g. \"net_af_xdp0,iface=eth0\"");
      }
    }
    for (const std::string& a : d.allow) {
      if (a.empty() || a.find_first_of(" \t") != std::string::npos) {
        r.invalid("allow", "'" + a + "' is not a PCI address such as \"0000:3b:00.0\"");
      }
    }
    if (d.mbufs < 1024 || d.mbufs > (1u << 24)) r.invalid("mbufs", "use 1024 to 16777216 mbufs per NUMA node");
    if (d.mbuf_cache > 512 || d.mbuf_cache * 3 > d.mbufs * 2) {
      r.invalid("mbuf_cache", "use at most 512 and at most two thirds of mbufs");
    }
    for (auto [key, value] : {std::pair{"rx_descriptors", d.rx_descriptors}, {"tx_descriptors", d.tx_descriptors}}) {
      if (value < 64 || value > 16384 || !std::has_single_bit(value)) {
        r.invalid(key, "use a power of two in [64, 16384]");
      }
    }
    if (!check(r)) return *error;
  }
  if (config.backend == "dpdk") {
    // DPDK numbers a port's queues 0..n-1; the list only says how many lcores serve them.
    for (std::size_t i = 0; i < config.queues.size(); ++i) {
      if (config.queues[i] != i) {
        return fail(ConfigError::invalid_value, where_of(file, *dp),
                    "[dataplane] queues: with backend = \"dpdk\" list the queues as 0, 1, ... n-1 (one lcore each)");
      }
    }
    if (config.dpdk.allow.empty() && config.dpdk.vdevs.empty()) {
      return fail(ConfigError::missing_field, file,
                  "backend = \"dpdk\" needs a device: list a vfio-pci bound NIC in [dpdk] allow, or a vdev in "
                  "[dpdk] vdevs (e.g. \"net_af_xdp0,iface=eth0\")");
    }
  }

  if (const toml::table* shm = root["shm"].as_table()) {
    TableReader r(file, *shm, "shm");
    auto& g = config.geometry;
    r.read("request_capacity", g.request_capacity);
    r.read("reply_capacity", g.reply_capacity);
    r.read("loan_capacity", g.loan_capacity);
    r.read("small_buffer_size", g.small_buffer_size);
    r.read("small_buffer_count", g.small_buffer_count);
    r.read("large_buffer_size", g.large_buffer_size);
    r.read("large_buffer_count", g.large_buffer_count);
    if (!check(r)) return *error;
    if (auto ok = shm::check_geometry(g); !ok) {
      return fail(ConfigError::invalid_value, where_of(file, *shm), "[shm] " + ok.message());
    }
  }

  if (const toml::table* credits = root["credits"].as_table()) {
    TableReader r(file, *credits, "credits");
    CreditSettings& c = config.credits;
    r.read("refresh_us", c.refresh_us);
    r.read("target_delay_us", c.target_delay_us);
    r.read("increase_permille", c.increase_permille);
    r.read("decrease_permille", c.decrease_permille);
    if (c.refresh_us < 100 || c.refresh_us > 10'000'000) r.invalid("refresh_us", "use 100 to 10000000 microseconds");
    if (c.target_delay_us == 0) r.invalid("target_delay_us", "must be positive (microseconds)");
    if (c.increase_permille == 0 || c.increase_permille > 1000) {
      r.invalid("increase_permille", "use 1 to 1000 (per mille of credits_max added per refresh)");
    }
    if (c.decrease_permille == 0 || c.decrease_permille > 1000) {
      r.invalid("decrease_permille", "use 1 to 1000 (how hard a delay above target cuts the budget)");
    }
    if (!check(r)) return *error;
  }

  if (const toml::table* reassembly = root["reassembly"].as_table()) {
    TableReader r(file, *reassembly, "reassembly");
    ReassemblySettings& a = config.reassembly;
    r.read("timeout_ms", a.timeout_ms);
    r.read("memory_per_lcore", a.memory_per_lcore);
    r.read("memory_per_tenant", a.memory_per_tenant);
    r.read("messages", a.messages);
    if (a.timeout_ms == 0 || a.timeout_ms > 60'000) r.invalid("timeout_ms", "use 1 to 60000 milliseconds");
    if (a.memory_per_lcore < 65536 || a.memory_per_lcore > (1u << 30)) {
      r.invalid("memory_per_lcore", "use 65536 (one 64 KiB message) to 1073741824 bytes");
    }
    if (a.memory_per_tenant < 4096 || a.memory_per_tenant > a.memory_per_lcore) {
      r.invalid("memory_per_tenant", "use 4096 bytes up to memory_per_lcore");
    }
    if (a.messages == 0 || a.messages > 65536) r.invalid("messages", "use 1 to 65536 partial messages per lcore");
    if (!check(r)) return *error;
  }

  if (const toml::table* dedup = root["dedup"].as_table()) {
    TableReader r(file, *dedup, "dedup");
    DedupSettings& d = config.dedup;
    r.read("entries", d.entries);
    r.read("arena_bytes", d.arena_bytes);
    if (d.entries < 16 || d.entries > (1u << 18)) {
      r.invalid("entries", "use 16 to 262144 requests tracked per lcore (in flight plus answered within a window)");
    }
    if (d.arena_bytes < 65536 || d.arena_bytes > (1u << 30)) {
      r.invalid("arena_bytes", "use 65536 (one 64 KiB reply) to 1073741824 bytes of cached replies per lcore");
    }
    if (!check(r)) return *error;
  }

  if (const toml::table* cache = root["response_cache"].as_table()) {
    TableReader r(file, *cache, "response_cache");
    r.read("bytes", config.response_cache.bytes);
    const std::uint32_t bytes = config.response_cache.bytes;
    if (bytes != 0 && (bytes < (128u << 10) || bytes > (1u << 30))) {
      r.invalid("bytes", "use 0 (no response cache) or 131072 to 1073741824 bytes per lcore");
    }
    if (!check(r)) return *error;
  }

  if (const toml::table* telemetry = root["telemetry"].as_table()) {
    TableReader r(file, *telemetry, "telemetry");
    r.read("stage_latency", config.telemetry.stage_latency);
    r.read("trace_sample_rate", config.telemetry.trace_sample_rate);
    const double rate = config.telemetry.trace_sample_rate;
    if (!(rate >= 0.0 && rate <= 1.0)) {
      r.invalid("trace_sample_rate", "use a number from 0 (trace only client-sampled requests) to 1 (trace all)");
    }
    if (!check(r)) return *error;
  }

  std::set<std::uint32_t> tenant_ids;
  if (const toml::node* node = root.get("tenants")) {
    const toml::array* tenants = node->as_array();
    if (tenants == nullptr) return fail(ConfigError::invalid_value, where_of(file, *node), "use [[tenants]] tables");
    for (const toml::node& entry : *tenants) {
      const toml::table* t = entry.as_table();
      if (t == nullptr) return fail(ConfigError::invalid_value, where_of(file, entry), "use [[tenants]] tables");
      TenantConfig tenant;
      TableReader r(file, *t, "tenants");
      r.require("id");
      r.read("id", tenant.id);
      r.read("name", tenant.name);
      r.read("rate_pps", tenant.rate_pps);
      r.read("burst", tenant.burst);
      r.read_list("prefixes", tenant.prefixes);
      r.read("interactive_rate_pps", tenant.interactive_rate_pps);
      r.read("interactive_burst", tenant.interactive_burst);
      r.read("background_rate_pps", tenant.background_rate_pps);
      r.read("background_burst", tenant.background_burst);
      r.read("credits_max", tenant.credits_max);
      r.read("credits_min", tenant.credits_min);
      r.read("credit_delay_target_us", tenant.credit_delay_target_us);
      if (!r.error && !tenant_ids.insert(tenant.id).second) r.invalid("id", "tenant ids must be unique");
      if (!r.error && tenant.rate_pps > 0 && tenant.burst == 0) r.invalid("burst", "set a burst with rate_pps");
      if (std::string problem = model::tenant_limits_problem(tenant); !r.error && !problem.empty()) {
        const std::string key = problem.substr(0, problem.find(' '));  // the message starts with the key
        r.invalid(key.c_str(), problem.substr(key.size() + 1));
      }
      for (const auto& prefix : tenant.prefixes) {
        if (auto parsed = model::parse_ip_prefix(prefix); !r.error && !parsed) r.invalid("prefixes", parsed.message());
      }
      if (!check(r)) return *error;
      config.tenants.push_back(std::move(tenant));
    }
  }

  std::set<std::string> worker_names;
  if (const toml::node* node = root.get("workers")) {
    const toml::array* workers = node->as_array();
    if (workers == nullptr) return fail(ConfigError::invalid_value, where_of(file, *node), "use [[workers]] tables");
    for (const toml::node& entry : *workers) {
      const toml::table* t = entry.as_table();
      if (t == nullptr) return fail(ConfigError::invalid_value, where_of(file, entry), "use [[workers]] tables");
      WorkerConfig worker;
      TableReader r(file, *t, "workers");
      r.require("name");
      r.read("name", worker.name);
      if (!r.error && (worker.name.empty() || worker.name.size() > 64 ||
                       worker.name.find_first_not_of(
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != std::string::npos)) {
        r.invalid("name", "use 1-64 characters from [A-Za-z0-9._-]");
      }
      if (!r.error && !worker_names.insert(worker.name).second) r.invalid("name", "worker names must be unique");
      if (!check(r)) return *error;
      config.workers.push_back(std::move(worker));
    }
  }
  if (auto generic = add_generic_slots(config, worker_names, file); !generic) return generic.error();

  std::set<std::uint32_t> agent_ids;
  if (const toml::node* node = root.get("agents")) {
    const toml::array* agents = node->as_array();
    if (agents == nullptr) return fail(ConfigError::invalid_value, where_of(file, *node), "use [[agents]] tables");
    for (const toml::node& entry : *agents) {
      const toml::table* t = entry.as_table();
      if (t == nullptr) return fail(ConfigError::invalid_value, where_of(file, entry), "use [[agents]] tables");
      AgentConfig agent;
      TableReader r(file, *t, "agents");
      r.require("id");
      r.require("tenant");
      r.require("workers");
      r.read("id", agent.id);
      r.read("tenant", agent.tenant);
      r.read("name", agent.name);
      r.read_list("workers", agent.workers);
      read_scheduling(r, agent.scheduling);
      if (!r.error && !agent_ids.insert(agent.id).second) r.invalid("id", "agent ids must be unique");
      if (!r.error && !tenant_ids.empty() && !tenant_ids.contains(agent.tenant)) {
        r.invalid("tenant", "tenant " + std::to_string(agent.tenant) + " is not declared in [[tenants]]");
      }
      if (!r.error && agent.workers.size() > 64) r.invalid("workers", "list at most 64 workers");
      for (const auto& name : agent.workers) {
        if (!r.error && !worker_names.contains(name)) {
          r.error = fail(ConfigError::unknown_reference, where_of(file, *t),
                         "[agents] " + std::to_string(agent.id) + " names worker '" + name +
                             "', which no [[workers]] entry declares");
        }
      }
      if (!check(r)) return *error;
      config.agents.push_back(std::move(agent));
    }
  }
  return config;
}

}  // namespace

std::string generic_slot_name(std::uint32_t index) {
  return "slot-" + std::to_string(index);
}

ConfigResult<Ok> check_tables(const std::vector<TenantConfig>& tenants, const std::vector<AgentConfig>& agents,
                              const std::vector<WorkerConfig>& workers) {
  auto invalid = [](std::string what) { return make_error(ConfigError::invalid_value, std::move(what)); };
  std::set<std::uint32_t> tenant_ids;
  for (const TenantConfig& t : tenants) {
    const std::string item = "tenant " + std::to_string(t.id);
    if (!tenant_ids.insert(t.id).second) return invalid(item + ": tenant ids must be unique");
    if (t.rate_pps > 0 && t.burst == 0) return invalid(item + ": set a burst with rate_pps");
    if (std::string problem = model::tenant_limits_problem(t); !problem.empty()) return invalid(item + ": " + problem);
    for (const std::string& prefix : t.prefixes) {
      if (auto parsed = model::parse_ip_prefix(prefix); !parsed) return invalid(item + ": " + parsed.message());
    }
  }
  std::set<std::string> slot_names;
  for (const WorkerConfig& w : workers) slot_names.insert(w.name);
  std::set<std::uint32_t> agent_ids;
  for (const AgentConfig& a : agents) {
    const std::string item = "agent " + std::to_string(a.id);
    if (!agent_ids.insert(a.id).second) return invalid(item + ": agent ids must be unique");
    if (!tenant_ids.empty() && !tenant_ids.contains(a.tenant)) {
      return make_error(ConfigError::unknown_reference,
                        item + ": tenant " + std::to_string(a.tenant) + " is not in the tenants table");
    }
    if (a.workers.size() > 64) return invalid(item + ": list at most 64 workers");
    if (auto checked = model::check_scheduling(a.scheduling, item); !checked) return invalid(checked.message());
    for (const std::string& name : a.workers) {
      if (!slot_names.contains(name)) {
        return make_error(ConfigError::unknown_reference,
                          item + " names worker slot '" + name +
                              "', which this data plane does not have (see hello/slots for the slot names)");
      }
    }
  }
  return Ok{};
}

ConfigResult<DataplaneConfig> parse_config(const std::string& text, const std::string& source_name) {
  try {
    toml::table root = toml::parse(text, source_name);
    return build(root, source_name);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    return make_error(ConfigError::parse_error, source_name + ":" + std::to_string(src.begin.line) + ":" +
                                                    std::to_string(src.begin.column) + ": " +
                                                    std::string(e.description()));
  }
}

ConfigResult<DataplaneConfig> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return make_error(ConfigError::io_error, "cannot read config file '" + path + "'; check the path and permissions");
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

}  // namespace axon::dataplane
