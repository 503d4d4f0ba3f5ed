// Placing a profile on the host (see plan.h). One function per profile section; each adds
// knobs in a fixed order, which is also the order apply writes them and the reverse of the
// order rollback restores them.
#include "plan.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include "cpus.h"
#include "host.h"

namespace axon::tuning {
namespace {

constexpr const char* kNeedCores =
    "needs the data plane's cores: pass --dataplane-config /etc/axon/dataplane.toml or --cores";
constexpr const char* kNeedInterface =
    "needs the data plane's interface: pass --dataplane-config /etc/axon/dataplane.toml or --interface";

bool dir_exists(const std::string& root, const std::string& path) {
  struct stat st {};
  return ::stat(join_root(root, path).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool file_exists(const std::string& root, const std::string& path) {
  struct stat st {};
  return ::stat(join_root(root, path).c_str(), &st) == 0;
}

Knob file_knob(const char* section, std::string label, std::string group, std::string path,
               FileFormat format = FileFormat::plain) {
  Knob k;
  k.kind = KnobKind::file;
  k.section = section;
  k.label = std::move(label);
  k.group = std::move(group);
  k.path = std::move(path);
  k.format = format;
  return k;
}

Want set_to(std::string value) {
  return Want{Want::Op::set, std::move(value)};
}

struct Builder {
  const Options& options;
  const Profile& profile;
  const HostFacts& host;
  Plan& plan;

  void add(Knob knob, Want want) { plan.items.push_back(PlanItem{std::move(knob), std::move(want), ""}); }
  void skip(Knob knob, Want want, std::string reason) {
    plan.items.push_back(PlanItem{std::move(knob), std::move(want), std::move(reason)});
  }
  void skip(const char* section, const std::string& label, const std::string& want, std::string reason) {
    skip(file_knob(section, label, label, ""), set_to(want), std::move(reason));
  }

  // The CPUs of a role; sets `why` when they are not known.
  std::optional<CpuSet> cpus(CpuRole role, std::string& why) const {
    switch (role) {
      case CpuRole::all: return host.online_cpus;
      case CpuRole::dataplane:
        if (host.dataplane_cpus.empty()) {
          why = kNeedCores;
          return std::nullopt;
        }
        return host.dataplane_cpus;
      case CpuRole::housekeeping:
        if (host.dataplane_cpus.empty()) {
          why = kNeedCores;
          return std::nullopt;
        }
        return host.housekeeping_cpus;
    }
    return std::nullopt;
  }

  std::vector<std::string> interfaces(std::string& why) const {
    std::vector<std::string> out;
    const std::vector<std::string> wanted =
        profile.interfaces.empty() ? std::vector<std::string>{"dataplane"} : profile.interfaces;
    for (const auto& name : wanted) {
      if (name == "dataplane") {
        if (host.interfaces.empty()) why = kNeedInterface;
        out.insert(out.end(), host.interfaces.begin(), host.interfaces.end());
      } else {
        out.push_back(name);
      }
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  void sysctls() {
    for (const auto& [key, want] : profile.sysctls) {
      std::string rel = key;
      if (key.find('/') == std::string::npos) std::replace(rel.begin(), rel.end(), '.', '/');
      Knob k = file_knob("sysctl", key, key, "/proc/sys/" + rel);
      k.netns_scoped = key.rfind("net.", 0) == 0 || key.rfind("net/", 0) == 0;
      add(std::move(k), want);
    }
  }

  void hugepages(const std::optional<Want>& want, const char* size_dir, const char* size_label) {
    if (!want) return;
    if (host.numa_nodes.empty()) {
      // No NUMA sysfs: the global count is all there is.
      const std::string global = std::string("/sys/kernel/mm/hugepages/") + size_dir + "/nr_hugepages";
      add(file_knob("memory", std::string(size_label) + " hugepages", std::string("hugepages-") + size_label, global),
          *want);
      return;
    }
    for (int node : host.numa_nodes) {
      const std::string n = std::to_string(node);
      add(file_knob("memory", "node" + n + " " + size_label + " hugepages", std::string("hugepages-") + size_label,
                    "/sys/devices/system/node/node" + n + "/hugepages/" + size_dir + "/nr_hugepages"),
          *want);
    }
  }

  void memory() {
    hugepages(profile.hugepages_2m_per_node, "hugepages-2048kB", "2M");
    hugepages(profile.hugepages_1g_per_node, "hugepages-1048576kB", "1G");
    if (profile.transparent_hugepages) {
      add(file_knob("memory", "transparent hugepages", "thp", "/sys/kernel/mm/transparent_hugepage/enabled",
                    FileFormat::bracket),
          set_to(*profile.transparent_hugepages));
    }
    if (profile.transparent_hugepages_defrag) {
      add(file_knob("memory", "transparent hugepage defrag", "thp-defrag", "/sys/kernel/mm/transparent_hugepage/defrag",
                    FileFormat::bracket),
          set_to(*profile.transparent_hugepages_defrag));
    }
  }

  void governor() {
    if (!profile.governor) return;
    std::string why;
    auto list = cpus(profile.governor_cpus, why);
    if (!list) return skip("cpu", "cpu governor", *profile.governor, why);
    if (!dir_exists(options.root,
                    "/sys/devices/system/cpu/cpu" + std::to_string(list->empty() ? 0 : list->front()) + "/cpufreq")) {
      return skip("cpu", "cpu governor", *profile.governor,
                  "no cpufreq on this host (no /sys/devices/system/cpu/cpu*/cpufreq): a VM, or no frequency driver "
                  "loaded; the hypervisor or firmware sets the frequency");
    }
    for (int cpu : *list) {
      const std::string c = std::to_string(cpu);
      add(file_knob("cpu", "cpu" + c + " governor", "governor",
                    "/sys/devices/system/cpu/cpu" + c + "/cpufreq/scaling_governor"),
          set_to(*profile.governor));
    }
  }

  void idle_states() {
    if (!profile.idle_max_latency_us) return;
    const std::string want_label = "states above " + std::to_string(*profile.idle_max_latency_us) + " us disabled";
    std::string why;
    auto list = cpus(profile.idle_cpus, why);
    if (!list) return skip("cpu", "cpu idle states", want_label, why);
    bool any = false;
    for (int cpu : *list) {
      const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cpuidle";
      for (int state = 0; state < 16; ++state) {
        const std::string dir = base + "/state" + std::to_string(state);
        if (!dir_exists(options.root, dir)) break;
        any = true;
        auto latency = read_text(options.root, dir + "/latency");
        auto name = read_text(options.root, dir + "/name");
        std::string n = name ? *name : "state" + std::to_string(state);
        n.erase(std::remove(n.begin(), n.end(), '\n'), n.end());
        if (!latency) continue;
        long us = std::strtol(latency->c_str(), nullptr, 10);
        if (us <= *profile.idle_max_latency_us) continue;  // shallow enough: left as it is
        add(file_knob("cpu", "cpu" + std::to_string(cpu) + " idle " + n + " (" + std::to_string(us) + " us) disable",
                      "idle-" + n, dir + "/disable"),
            set_to("1"));
      }
    }
    if (!any) {
      auto driver = read_text(options.root, "/sys/devices/system/cpu/cpuidle/current_driver");
      std::string d = driver ? *driver : "";
      d.erase(std::remove(d.begin(), d.end(), '\n'), d.end());
      skip("cpu", "cpu idle states", want_label,
           "no cpuidle states on this host (cpuidle driver: " + (d.empty() ? std::string("absent") : d) +
               "); a VM idles through the hypervisor");
    }
  }

  void irqs() {
    if (profile.irq_steer == IrqSteer::none && !profile.irq_default_affinity) return;
    if (host.dataplane_cpus.empty()) return skip("irq", "irq affinity", "housekeeping CPUs", kNeedCores);
    if (host.housekeeping_cpus.empty()) {
      return skip("irq", "irq affinity", "housekeeping CPUs",
                  "every online CPU is a data plane core: leave at least one for interrupts and the control plane");
    }
    const std::string hk = format_cpulist(host.housekeeping_cpus);
    if (profile.irq_steer == IrqSteer::nic) {
      std::string why;
      auto ifs = interfaces(why);
      if (ifs.empty()) skip("irq", "nic irq affinity", hk, why);
      for (const auto& ifname : ifs) {
        auto list = interface_irqs(options.root, ifname);
        if (list.empty()) {
          skip("irq", ifname + " irq affinity", hk,
               "no interrupts found for " + ifname +
                   " (a virtual device such as veth has none; its receive work runs "
                   "where the sender runs)");
        }
        for (int irq : list) {
          const std::string n = std::to_string(irq);
          add(file_knob("irq", "irq " + n + " (" + ifname + ") affinity", "irq-" + ifname,
                        "/proc/irq/" + n + "/smp_affinity_list", FileFormat::cpulist),
              set_to(hk));
        }
      }
    } else if (profile.irq_steer == IrqSteer::all) {
      for (int irq : all_irqs(options.root)) {
        const std::string n = std::to_string(irq);
        add(file_knob("irq", "irq " + n + " affinity", "irq", "/proc/irq/" + n + "/smp_affinity_list",
                      FileFormat::cpulist),
            set_to(hk));
      }
    }
    if (profile.irq_default_affinity) {
      const int ncpus = host.online_cpus.empty() ? 1 : host.online_cpus.back() + 1;
      add(file_knob("irq", "default irq affinity (new IRQs)", "irq-default", "/proc/irq/default_smp_affinity",
                    FileFormat::cpumask),
          set_to(format_cpumask(host.housekeeping_cpus, ncpus)));
    }
  }

  void net() {
    struct Entry {
      const char* file;
      std::optional<Want> want;
    };
    std::optional<Want> threaded;
    if (profile.threaded_napi) threaded = set_to(*profile.threaded_napi ? "1" : "0");
    const Entry entries[] = {{"napi_defer_hard_irqs", profile.napi_defer_hard_irqs},
                             {"gro_flush_timeout", profile.gro_flush_timeout},
                             {"threaded", threaded}};
    if (std::none_of(std::begin(entries), std::end(entries), [](const Entry& e) { return e.want.has_value(); })) return;
    std::string why;
    auto ifs = interfaces(why);
    if (ifs.empty()) skip("net", "interface napi settings", "-", why);
    for (const auto& ifname : ifs) {
      for (const auto& e : entries) {
        if (!e.want) continue;
        Knob k = file_knob("net", ifname + " " + e.file, std::string("net-") + e.file,
                           "/sys/class/net/" + ifname + "/" + e.file);
        k.netns_scoped = true;
        if (!dir_exists(options.root, "/sys/class/net/" + ifname)) {
          skip(std::move(k), *e.want, "no interface " + ifname + " on this host (ip link)");
        } else {
          add(std::move(k), *e.want);
        }
      }
    }
  }

  void nic() {
    struct Entry {
      EthtoolParam param;
      const char* label;
      std::optional<Want> want;
      std::string skip;
    };
    auto queues = [&](const std::optional<std::string>& v, std::string& skip_reason) -> std::optional<Want> {
      if (!v) return std::nullopt;
      if (*v != "dataplane") return set_to(*v);
      if (host.dataplane_cpus.empty()) {
        skip_reason = kNeedCores;
        return set_to("dataplane cores");
      }
      return set_to(std::to_string(host.dataplane_cpus.size()));
    };
    std::vector<Entry> entries;
    std::string s1, s2, s3;
    entries.push_back({EthtoolParam::combined_count, "combined queues", queues(profile.combined_queues, s1), s1});
    entries.push_back({EthtoolParam::rx_count, "rx queues", queues(profile.rx_queues, s2), s2});
    entries.push_back({EthtoolParam::tx_count, "tx queues", queues(profile.tx_queues, s3), s3});
    entries.push_back(
        {EthtoolParam::adaptive_rx, "adaptive-rx",
         profile.adaptive_rx ? std::optional<Want>(set_to(*profile.adaptive_rx ? "1" : "0")) : std::nullopt, ""});
    entries.push_back(
        {EthtoolParam::adaptive_tx, "adaptive-tx",
         profile.adaptive_tx ? std::optional<Want>(set_to(*profile.adaptive_tx ? "1" : "0")) : std::nullopt, ""});
    entries.push_back({EthtoolParam::rx_usecs, "rx-usecs", profile.rx_usecs, ""});
    entries.push_back({EthtoolParam::rx_frames, "rx-frames", profile.rx_frames, ""});
    entries.push_back({EthtoolParam::tx_usecs, "tx-usecs", profile.tx_usecs, ""});
    entries.push_back({EthtoolParam::tx_frames, "tx-frames", profile.tx_frames, ""});
    if (std::none_of(entries.begin(), entries.end(), [](const Entry& e) { return e.want.has_value(); })) return;
    std::string why;
    auto ifs = interfaces(why);
    if (ifs.empty()) skip("nic", "nic queues and coalescing", "-", why);
    for (const auto& ifname : ifs) {
      for (const auto& e : entries) {
        if (!e.want) continue;
        Knob k;
        k.kind = KnobKind::ethtool;
        k.section = "nic";
        k.label = ifname + " " + e.label;
        k.group = std::string("nic-") + e.label;
        k.ifname = ifname;
        k.param = e.param;
        k.netns_scoped = true;
        if (!e.skip.empty()) {
          skip(std::move(k), *e.want, e.skip);
        } else {
          add(std::move(k), *e.want);
        }
      }
    }
  }

  void cpusets() {
    if (profile.cpusets.empty()) return;
    std::string mode;
    const std::string mount = cpuset_mount(options.root, mode);
    for (const auto& [role, group] : profile.cpusets) {
      Knob k =
          file_knob("cgroup", role + " cpuset (" + group + ")", "cpuset-" + role,
                    (mount.empty() ? "/sys/fs/cgroup" : mount) + "/" + group + "/cpuset.cpus", FileFormat::cpulist);
      if (host.dataplane_cpus.empty()) {
        skip(std::move(k), set_to("-"), kNeedCores);
        continue;
      }
      if (host.housekeeping_cpus.empty()) {
        skip(std::move(k), set_to("-"), "every online CPU is a data plane core: no housekeeping CPU left");
        continue;
      }
      // The data plane keeps one housekeeping CPU for its control thread; background
      // workers give up the first housekeeping CPU to the control plane and interrupts.
      CpuSet cpus = host.housekeeping_cpus;
      if (role == "dataplane") {
        cpus = host.dataplane_cpus;
        cpus.push_back(host.housekeeping_cpus.front());
        std::sort(cpus.begin(), cpus.end());
      } else if (role == "background" && cpus.size() > 1) {
        cpus.erase(cpus.begin());
      }
      const Want want = set_to(format_cpulist(cpus));
      if (mount.empty()) {
        skip(std::move(k), want, "no cpuset cgroup controller mounted (neither cgroup v2 nor a v1 cpuset hierarchy)");
      } else if (!dir_exists(options.root, mount + "/" + group)) {
        skip(std::move(k), want,
             "cgroup " + group + " does not exist under " + mount +
                 "; tuning never creates groups it does not own: start the service, then apply again");
      } else if (!file_exists(options.root, k.path)) {
        skip(std::move(k), want,
             "the cpuset controller is not enabled for " + group +
                 " (v2: add +cpuset to the parent's cgroup.subtree_control; systemd: AllowedCPUs= in the unit)");
      } else {
        add(std::move(k), want);
      }
    }
  }

  void cmdline() {
    if (profile.cmdline.empty()) return;
    auto text = read_text(options.root, "/proc/cmdline");
    std::vector<std::string> tokens;
    if (text) {
      std::istringstream in(*text);
      std::string t;
      while (in >> t) tokens.push_back(t);
    }
    std::string fix;
    bool any_unknown = false;
    for (const auto& raw : profile.cmdline) {
      std::string param = raw;
      bool unknown = false;
      auto expand = [&](const std::string& placeholder, const CpuSet& cpus) {
        for (auto pos = param.find(placeholder); pos != std::string::npos; pos = param.find(placeholder)) {
          if (host.dataplane_cpus.empty() || cpus.empty()) unknown = true;
          param.replace(pos, placeholder.size(), format_cpulist(cpus));
        }
      };
      expand("{dataplane}", host.dataplane_cpus);
      expand("{housekeeping}", host.housekeeping_cpus);
      CmdlineParam p;
      p.want = param;
      const std::string key = param.substr(0, param.find('='));
      for (const auto& t : tokens) {
        if (t.substr(0, t.find('=')) == key) p.present = t;
      }
      if (unknown) {
        p.want = raw;
        p.unknown = true;
        any_unknown = true;
      } else {
        p.ok = p.present == param || same_cmdline_value(p.present, param);
        if (!p.ok) fix += (fix.empty() ? "" : " ") + param;
      }
      plan.cmdline.push_back(p);
    }
    plan.cmdline_fix = fix;
    if (any_unknown)
      plan.notes.push_back(std::string("kernel parameters with {dataplane} or {housekeeping} ") + kNeedCores);
  }

  // "isolcpus=domain,managed_irq,1-3" and "isolcpus=managed_irq,domain,1,2,3" are one setting.
  static bool same_cmdline_value(const std::string& a, const std::string& b) {
    auto split = [](const std::string& t, std::vector<std::string>& flags, std::string& list) {
      const auto eq = t.find('=');
      if (eq == std::string::npos) return false;
      std::string rest = t.substr(eq + 1);
      std::size_t pos = 0;
      while (pos < rest.size() && std::isalpha(static_cast<unsigned char>(rest[pos]))) {
        auto comma = rest.find(',', pos);
        if (comma == std::string::npos) return false;
        flags.push_back(rest.substr(pos, comma - pos));
        pos = comma + 1;
      }
      list = rest.substr(pos);
      std::sort(flags.begin(), flags.end());
      return true;
    };
    std::vector<std::string> fa, fb;
    std::string la, lb;
    if (a.substr(0, a.find('=')) != b.substr(0, b.find('='))) return false;
    if (!split(a, fa, la) || !split(b, fb, lb) || fa != fb) return false;
    auto ca = parse_cpulist(la), cb = parse_cpulist(lb);
    return ca && cb && *ca == *cb;
  }
};

// The interfaces' /sys files belong to this namespace only when /sys was mounted for it
// (ip netns exec does that); a bare unshare -n still shows the host's interfaces there.
bool sysfs_is_this_netns(const std::string& root) {
  std::vector<std::string> in_sysfs;
  if (DIR* dir = ::opendir(join_root(root, "/sys/class/net").c_str())) {
    while (const dirent* e = ::readdir(dir)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") in_sysfs.push_back(name);
    }
    ::closedir(dir);
  }
  std::sort(in_sysfs.begin(), in_sysfs.end());
  return in_sysfs == netns_interfaces();
}

void restrict_to_netns(const Options& options, Plan& plan) {
  std::vector<std::string> dropped;
  std::vector<PlanItem> kept;
  const bool sysfs_ok = sysfs_is_this_netns(options.root);
  for (auto& item : plan.items) {
    if (!item.knob.netns_scoped) {
      if (std::find(dropped.begin(), dropped.end(), item.knob.section) == dropped.end()) {
        dropped.push_back(item.knob.section);
      }
      continue;
    }
    if (item.knob.kind == KnobKind::file && item.knob.path.rfind("/sys/", 0) == 0 && !sysfs_ok && item.skip.empty()) {
      item.skip = "/sys is not this network namespace's (enter it with ip netns exec, which mounts one)";
    }
    kept.push_back(std::move(item));
  }
  plan.items = std::move(kept);
  for (const auto& section : dropped) {
    plan.notes.push_back("--netns-only: host-wide " + section + " settings of the profile left alone");
  }
  if (!plan.cmdline.empty()) {
    plan.cmdline.clear();
    plan.cmdline_fix.clear();
    plan.notes.push_back("--netns-only: kernel command line not checked");
  }
}

void note_irqbalance(const Options& options, const Profile& profile, Plan& plan) {
  if (profile.irq_steer == IrqSteer::none || options.root != "/") return;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return;
  bool running = false;
  while (const dirent* e = ::readdir(dir)) {
    const std::string pid = e->d_name;
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), ::isdigit)) continue;
    auto comm = read_text("/", "/proc/" + pid + "/comm");
    if (comm && *comm == "irqbalance\n") running = true;
  }
  ::closedir(dir);
  if (running && !plan.host.dataplane_cpus.empty()) {
    plan.notes.push_back("irqbalance is running and moves interrupts back: set IRQBALANCE_BANNED_CPULIST=" +
                         format_cpulist(plan.host.dataplane_cpus) +
                         " in /etc/default/irqbalance and restart it, or stop it");
  }
}

}  // namespace

std::optional<std::string> target_value(const Knob& knob, const Want& want, const std::string& live, std::string& why) {
  if (want.op == Want::Op::set) {
    if (same_value(knob, live, want.value)) return std::nullopt;
    return want.value;
  }
  char* end = nullptr;
  errno = 0;
  const long long current = std::strtoll(live.c_str(), &end, 10);
  const long long wanted = std::strtoll(want.value.c_str(), nullptr, 10);
  if (live.empty() || *end != '\0' || errno != 0) {
    why = "live value '" + live + "' is not a single number, so " + want.display() + " cannot be compared";
    return std::nullopt;
  }
  if (want.op == Want::Op::at_least ? current >= wanted : current <= wanted) return std::nullopt;
  return want.value;
}

TResult<Plan> make_plan(const std::string& name, const Options& options) {
  if (options.netns_only && !in_separate_netns()) {
    return make_error(TuningError::not_netns,
                      "--netns-only needs a network namespace of its own; run it through ip netns exec NAME");
  }
  auto profile = load_profile(name, options.profile_dirs);
  if (!profile) return profile.error();
  auto host = read_host(options);
  if (!host) return host.error();
  Plan plan;
  plan.profile = std::move(profile.value());
  plan.host = std::move(host.value());
  Builder b{options, plan.profile, plan.host, plan};
  b.sysctls();
  b.memory();
  b.governor();
  b.idle_states();
  b.irqs();
  b.net();
  b.nic();
  b.cpusets();
  b.cmdline();
  note_irqbalance(options, plan.profile, plan);
  if (options.netns_only) restrict_to_netns(options, plan);
  return plan;
}

}  // namespace axon::tuning
