// Host facts (see host.h).
#include "host.h"

#include <dirent.h>
#include <net/if.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "knobs.h"

namespace axon::tuning {
namespace {

bool exists(const std::string& root, const std::string& path) {
  struct stat st {};
  return ::stat(join_root(root, path).c_str(), &st) == 0;
}

std::vector<std::string> list_dir(const std::string& full) {
  std::vector<std::string> out;
  DIR* dir = ::opendir(full.c_str());
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int> numeric_entries(const std::string& full, const std::string& prefix = "") {
  std::vector<int> out;
  for (const auto& name : list_dir(full)) {
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), ::isdigit) || digits.size() > 7) continue;
    out.push_back(std::stoi(digits));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The data plane's [dataplane] cores and interface. Only these two keys are read, and
// leniently: the data plane validates its own file; this only places knobs beside it.
TResult<Ok> read_dataplane_config(const std::string& path, HostFacts& facts, bool want_cores, bool want_ifs) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return make_error(TuningError::invalid_input, "cannot read the data plane config " + path + ": " +
                                                      std::string(e.description()) +
                                                      " (check it with axon-dataplane --check, or pass --cores)");
  }
  const toml::table* dp = table["dataplane"].as_table();
  if (dp == nullptr) {
    return make_error(TuningError::invalid_input, path + " has no [dataplane] table; pass the data plane's config");
  }
  if (want_cores) {
    if (const toml::array* cores = (*dp)["cores"].as_array()) {
      CpuSet cpus;
      for (const auto& c : *cores) {
        auto v = c.value_exact<std::int64_t>();
        if (!v || *v < 0 || *v > 65535) {
          return make_error(TuningError::invalid_input, path + ": [dataplane] cores must be CPU numbers");
        }
        cpus.push_back(int(*v));
      }
      std::sort(cpus.begin(), cpus.end());
      cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
      facts.dataplane_cpus = cpus;
      facts.cores_from = path;
    }
  }
  if (want_ifs) {
    if (auto ifname = (*dp)["interface"].value<std::string>(); ifname && !ifname->empty()) {
      facts.interfaces = {*ifname};
    }
  }
  return Ok{};
}

}  // namespace

TResult<HostFacts> read_host(const Options& options) {
  HostFacts facts;
  if (auto online = read_text(options.root, "/sys/devices/system/cpu/online")) {
    if (auto cpus = parse_cpulist(*online)) facts.online_cpus = *cpus;
  }
  if (facts.online_cpus.empty()) {
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < n && options.root == "/"; ++i) facts.online_cpus.push_back(int(i));
  }
  if (auto nodes = read_text(options.root, "/sys/devices/system/node/online")) {
    if (auto list = parse_cpulist(*nodes)) facts.numa_nodes = *list;
  }
  if (facts.numa_nodes.empty())
    facts.numa_nodes = numeric_entries(join_root(options.root, "/sys/devices/system/node"), "node");

  const bool want_cores = !options.cores.has_value();
  const bool want_ifs = options.interfaces.empty();
  if (!options.dataplane_config.empty() && (want_cores || want_ifs)) {
    auto r = read_dataplane_config(options.dataplane_config, facts, want_cores, want_ifs);
    if (!r) return r.error();
  }
  if (options.cores) {
    CpuSet cpus = *options.cores;
    std::sort(cpus.begin(), cpus.end());
    cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
    facts.dataplane_cpus = cpus;
    facts.cores_from = "--cores";
  }
  if (!options.interfaces.empty()) facts.interfaces = options.interfaces;
  for (int c : facts.dataplane_cpus) {
    // Without an online list (a sandbox root without one) there is nothing to check against.
    if (facts.online_cpus.empty()) break;
    if (!std::binary_search(facts.online_cpus.begin(), facts.online_cpus.end(), c)) {
      return make_error(TuningError::invalid_input,
                        "data plane core " + std::to_string(c) + " (from " + facts.cores_from +
                            ") is not an online CPU (online: " + format_cpulist(facts.online_cpus) +
                            "); fix [dataplane] cores or --cores");
    }
  }
  facts.housekeeping_cpus = set_minus(facts.online_cpus, facts.dataplane_cpus);
  (void)cpuset_mount(options.root, facts.cgroup_mode);
  return facts;
}

std::vector<int> interface_irqs(const std::string& root, const std::string& ifname) {
  const std::string dev = "/sys/class/net/" + ifname + "/device";
  std::vector<int> irqs = numeric_entries(join_root(root, dev + "/msi_irqs"));
  if (!irqs.empty()) return irqs;
  // No MSI list (virtio, platform devices): match the action names in /proc/interrupts,
  // either the interface ("eth0-TxRx-0") or the device ("virtio2-input.0").
  std::vector<std::string> names = {ifname};
  char link[512];
  const ssize_t n = ::readlink(join_root(root, dev).c_str(), link, sizeof(link) - 1);
  if (n > 0) {
    std::string target(link, std::size_t(n));
    names.push_back(target.substr(target.rfind('/') == std::string::npos ? 0 : target.rfind('/') + 1));
  }
  auto text = read_text(root, "/proc/interrupts");
  if (!text) return irqs;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first.empty() || first.back() != ':') continue;
    first.pop_back();
    if (!std::all_of(first.begin(), first.end(), ::isdigit) || first.empty() || first.size() > 7) continue;
    std::string word, last;
    while (words >> word) last = word;
    for (const auto& name : names) {
      // "virtio2" must match "virtio2-input.0" and "virtio2", never "virtio20-...".
      if (last == name || (last.size() > name.size() && last.compare(0, name.size(), name) == 0 &&
                           (last[name.size()] == '-' || last[name.size()] == '@'))) {
        irqs.push_back(std::stoi(first));
        break;
      }
    }
  }
  std::sort(irqs.begin(), irqs.end());
  irqs.erase(std::unique(irqs.begin(), irqs.end()), irqs.end());
  return irqs;
}

std::vector<int> all_irqs(const std::string& root) {
  return numeric_entries(join_root(root, "/proc/irq"));
}

std::string cpuset_mount(const std::string& root, std::string& mode) {
  if (exists(root, "/sys/fs/cgroup/cgroup.controllers")) {
    mode = "v2";
    return "/sys/fs/cgroup";
  }
  if (exists(root, "/sys/fs/cgroup/cpuset/cpuset.cpus")) {
    mode = "v1";
    return "/sys/fs/cgroup/cpuset";
  }
  mode = "none";
  return "";
}

std::string current_netns() {
  char buf[128];
  const ssize_t n = ::readlink("/proc/thread-self/ns/net", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, std::size_t(n)) : "";
}

bool in_separate_netns() {
  // The kernel registers its host-wide net.core sysctls (netdev_budget, busy_poll, ...)
  // in the initial namespace only, so their presence says where we are even when PID 1's
  // namespace cannot be read (a container, or no CAP_SYS_PTRACE over PID 1).
  struct stat st {};
  if (::stat("/proc/sys/net/core/netdev_budget", &st) == 0) return false;
  char buf[128];
  const ssize_t n = ::readlink("/proc/1/ns/net", buf, sizeof(buf) - 1);
  if (n > 0 && std::string(buf, std::size_t(n)) == current_netns()) return false;
  return true;
}

std::vector<std::string> netns_interfaces() {
  std::vector<std::string> out;
  // struct if_nameindex shares its name with the function, hence the elaborated type.
  if (struct if_nameindex* names = ::if_nameindex()) {
    for (struct if_nameindex* i = names; i->if_index != 0; ++i) out.emplace_back(i->if_name);
    ::if_freenameindex(names);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace axon::tuning
