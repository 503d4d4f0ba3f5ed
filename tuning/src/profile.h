// Tuning profiles: TOML files loaded strictly (unknown keys and bad values are errors with
// file:line), with `include` of other profiles merged underneath (the including file wins
// key by key, tables merge, arrays are replaced).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "axon/tuning/tuning.h"

namespace axon::tuning {

// A wanted value with tuned's operators: "N" sets, ">N" only raises, "<N" only lowers.
struct Want {
  enum class Op { set, at_least, at_most };
  Op op = Op::set;
  std::string value;

  [[nodiscard]] std::string display() const;  // "50", ">=512", "<=10"
};

// Which CPUs a per-CPU setting covers.
enum class CpuRole { all, dataplane, housekeeping };
// Which interrupts are steered to the housekeeping CPUs.
enum class IrqSteer { none, nic, all };

struct Profile {
  std::string name;
  std::string path;
  std::string description;
  std::vector<std::string> includes;  // every profile merged in, in load order

  std::vector<std::pair<std::string, Want>> sysctls;  // in file order

  // [memory]
  std::optional<Want> hugepages_2m_per_node;
  std::optional<Want> hugepages_1g_per_node;
  std::optional<std::string> transparent_hugepages;
  std::optional<std::string> transparent_hugepages_defrag;

  // [cpu]
  std::optional<std::string> governor;
  CpuRole governor_cpus = CpuRole::all;
  std::optional<int> idle_max_latency_us;
  CpuRole idle_cpus = CpuRole::all;

  // [irq]
  IrqSteer irq_steer = IrqSteer::none;
  bool irq_default_affinity = false;

  // [net]: per interface
  std::vector<std::string> interfaces;  // "dataplane" = the data plane's interface
  std::optional<Want> napi_defer_hard_irqs;
  std::optional<Want> gro_flush_timeout;
  std::optional<bool> threaded_napi;

  // [nic]: ethtool; a queue count may be "dataplane" (one queue per data plane core)
  std::optional<std::string> combined_queues;
  std::optional<std::string> rx_queues;
  std::optional<std::string> tx_queues;
  std::optional<Want> rx_usecs, rx_frames, tx_usecs, tx_frames;
  std::optional<bool> adaptive_rx, adaptive_tx;

  // [cgroup]: role (dataplane, controlplane, interactive, background) -> group path
  std::vector<std::pair<std::string, std::string>> cpusets;

  // [kernel_cmdline]: with {dataplane} and {housekeeping} placeholders
  std::vector<std::string> cmdline;
};

// Finds <name>.toml in the profile directories (or takes `name` as a path when it has a
// '/' or ends in .toml) and loads it with its includes.
TResult<Profile> load_profile(const std::string& name, const std::vector<std::string>& dirs);

// Where <name> would be loaded from; "" when nowhere.
std::string find_profile(const std::string& name, const std::vector<std::string>& dirs);

}  // namespace axon::tuning
