// The tuning tests' sandbox host (see sandbox.h).
#include "sandbox.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace axon::tuning::test {

namespace fs = std::filesystem;

Sandbox::Sandbox() {
  std::string tmpl = (fs::temp_directory_path() / "axon-tuning-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  base_ = tmpl;
  root_ = base_ + "/root";
  state_ = base_ + "/state";
  profiles_ = base_ + "/profiles";
  fs::create_directories(root_);
  fs::create_directories(profiles_);

  // CPUs 0-3, two NUMA nodes.
  put("/sys/devices/system/cpu/online", "0-3\n");
  put("/sys/devices/system/node/online", "0-1\n");
  for (int cpu = 0; cpu < 4; ++cpu) {
    const std::string c = "/sys/devices/system/cpu/cpu" + std::to_string(cpu);
    put(c + "/cpufreq/scaling_governor", "powersave\n");
    const char* names[] = {"POLL", "C1", "C2"};
    const char* latency[] = {"0", "1", "100"};
    for (int s = 0; s < 3; ++s) {
      const std::string st = c + "/cpuidle/state" + std::to_string(s);
      put(st + "/name", std::string(names[s]) + "\n");
      put(st + "/latency", std::string(latency[s]) + "\n");
      put(st + "/disable", "0\n");
    }
  }
  for (int node = 0; node < 2; ++node) {
    put("/sys/devices/system/node/node" + std::to_string(node) + "/hugepages/hugepages-2048kB/nr_hugepages", "16\n");
  }
  put("/sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n");
  put("/sys/kernel/mm/transparent_hugepage/defrag", "always defer defer+madvise [madvise] never\n");

  // sysctls, with the kernel's own formats (tabs in multi-value ones).
  put("/proc/sys/vm/swappiness", "60\n");
  put("/proc/sys/vm/max_map_count", "65530\n");
  put("/proc/sys/kernel/numa_balancing", "1\n");
  put("/proc/sys/net/core/rmem_max", "212992\n");
  put("/proc/sys/net/core/somaxconn", "8192\n");
  put("/proc/sys/net/ipv4/ip_local_port_range", "32768\t60999\n");

  // A NIC "axs0" whose PCI device has MSI vectors 40-42, plus unrelated IRQs.
  put("/sys/class/net/axs0/napi_defer_hard_irqs", "0\n");
  put("/sys/class/net/axs0/gro_flush_timeout", "0\n");
  put("/sys/class/net/axs0/threaded", "0\n");
  for (int irq : {40, 41, 42}) put("/sys/class/net/axs0/device/msi_irqs/" + std::to_string(irq), "msix\n");
  for (int irq : {1, 40, 41, 42}) put("/proc/irq/" + std::to_string(irq) + "/smp_affinity_list", "0-3\n");
  put("/proc/irq/default_smp_affinity", "f\n");
  put("/proc/interrupts", "           CPU0       CPU1\n  1:   9   0   IO-APIC   1-edge   i8042\n");
  put("/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet\n");

  // cgroup v2 with the data plane's group present and the control plane's absent.
  put("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu memory pids\n");
  put("/sys/fs/cgroup/system.slice/axon-dataplane.service/cpuset.cpus", "\n");
}

Sandbox::~Sandbox() {
  std::error_code ec;
  fs::remove_all(base_, ec);
}

void Sandbox::put(const std::string& path, const std::string& content) const {
  const fs::path full = root_ + path;
  fs::create_directories(full.parent_path());
  std::ofstream(full, std::ios::trunc) << content;
}

std::string Sandbox::get(const std::string& path) const {
  std::ifstream in(root_ + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Sandbox::profile(const std::string& name, const std::string& toml) const {
  std::ofstream(profiles_ + "/" + name + ".toml", std::ios::trunc) << toml;
}

std::map<std::string, std::string> Sandbox::tree() const {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(root_)) {
    if (!entry.is_regular_file()) continue;
    const std::string path = entry.path().string().substr(root_.size());
    out[path] = get(path);
  }
  return out;
}

}  // namespace axon::tuning::test
