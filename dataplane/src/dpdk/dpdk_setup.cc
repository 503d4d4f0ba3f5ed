// DPDK setup: EAL arguments from the [dpdk] options, EAL initialisation, one mbuf pool per
// NUMA node on hugepages, the single ethdev port's queues (RSS across them when the device
// has it) and an orderly teardown that leaves no runtime files behind.
//
// Threads: the EAL main lcore is the thread that calls open_dpdk (the daemon's control
// thread), mapped with --lcores to every CPU the process may use, so the EAL does not pin
// the control thread to one core. The poll loops are the daemon's own std::threads, pinned to
// [dataplane] cores; each one registers itself with rte_thread_register on its first burst
// (see dpdk_port.h), which gives it an lcore id and therefore a mempool cache. This keeps
// the engine backend-neutral (no rte_eal_remote_launch) at the cost of one predictable
// branch per burst.
#include <dirent.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <numa.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>

#include "axon/common/log.h"

#include "dpdk/dpdk_port.h"

namespace axon::dataplane {
namespace {

constexpr const char* kLog = "dpdk";

// The EAL keeps global state and cannot be initialised twice in one process.
std::atomic<bool> g_eal_claimed{false};

Error<PortError> fail(PortError code, std::string message) {
  return make_error(code, std::move(message));
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

// "0,1,3": the CPUs this process may run on, for the EAL main lcore's mapping.
std::string allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return "0";
  std::string out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    if (!out.empty()) out += ',';
    out += std::to_string(cpu);
  }
  return out.empty() ? "0" : out;
}

// Where the EAL puts its runtime directory for a prefix (eal_create_runtime_dir in 22.11).
std::string expected_runtime_dir(const std::string& prefix) {
  if (getuid() == 0) return "/var/run/dpdk/" + prefix;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  return std::string(xdg != nullptr ? xdg : "/tmp") + "/dpdk/" + prefix;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Removes a runtime directory and the plain files and sockets in it (the EAL makes no
// subdirectories there).
void remove_runtime_dir(const std::string& dir) {
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* entry = readdir(d)) {
      std::string name = entry->d_name;
      if (name == "." || name == "..") continue;
      ::unlink((dir + "/" + name).c_str());
    }
    closedir(d);
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    AXON_LOG_WARN(kLog, "could not remove the EAL runtime directory %s: %s", dir.c_str(), std::strerror(errno));
  }
}

// Whether something listens on a unix socket (the EAL's telemetry socket is SOCK_SEQPACKET).
bool socket_answers(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool live = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return live;
}

std::uint64_t free_hugepages() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t value = 0;
  while (in >> key) {
    if (key == "HugePages_Free:") {
      in >> value;
      return value;
    }
    in.ignore(256, '\n');
  }
  return 0;
}

std::string hugepage_hint() {
  return std::to_string(free_hugepages()) +
         " free 2 MiB hugepages; reserve more (echo N > /proc/sys/vm/nr_hugepages) or lower [dpdk] socket_mem / "
         "mbufs";
}

// "iface=veth0" inside a vdev's argument list, if any.
std::string vdev_interface(const std::string& vdev) {
  std::size_t at = vdev.find(",iface=");
  if (at == std::string::npos) return {};
  std::size_t begin = at + 7;
  std::size_t end = vdev.find(',', begin);
  return vdev.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

class DpdkRuntimeImpl final : public DpdkRuntime {
 public:
  ~DpdkRuntimeImpl() override { teardown(); }

  [[nodiscard]] std::uint32_t queue_count() const noexcept override { return queues_; }
  [[nodiscard]] std::unique_ptr<Port> take_port(std::uint32_t queue) noexcept override {
    if (queue >= ports_.size()) return nullptr;
    return std::move(ports_[queue]);
  }
  [[nodiscard]] std::string describe() const override { return device_ + " (" + driver_ + ")"; }
  [[nodiscard]] std::uint64_t mbufs_available() const noexcept override {
    std::uint64_t total = 0;
    for (const auto& [node, pool] : pools_) total += rte_mempool_avail_count(pool);
    return total;
  }
  [[nodiscard]] std::string runtime_dir() const override { return runtime_dir_; }
  [[nodiscard]] DeviceCounters device_counters() const noexcept override {
    DeviceCounters out;
    rte_eth_stats stats{};
    if (!port_started_ || rte_eth_stats_get(port_id_, &stats) != 0) return out;
    out.rx_missed = stats.imissed;
    // net_af_xdp's imissed holds its sockets' XDP_STATISTICS rx_dropped, but not rx_ring_full:
    // frames the kernel could not queue because the lcore was not draining the RX ring (e.g.
    // descheduled). Without them the counters would not add up to what reached the interface.
    for (int fd : xsk_fds_) {
      xdp_statistics xs{};
      socklen_t len = sizeof xs;
      if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &xs, &len) == 0 && len == sizeof xs) out.rx_missed += xs.rx_ring_full;
    }
    out.rx_nombuf = stats.rx_nombuf;
    out.rx_errors = stats.ierrors;
    out.tx_errors = stats.oerrors;
    return out;
  }

  void teardown() {
    ports_.clear();
    if (port_started_) {
      if (int rc = rte_eth_dev_stop(port_id_); rc != 0) {
        AXON_LOG_WARN(kLog, "stopping %s: %s", device_.c_str(), rte_strerror(-rc));
      }
      port_started_ = false;
    }
    if (port_open_) {
      // Closing detaches what the driver put on the host, e.g. net_af_xdp's XDP program.
      (void)rte_eth_dev_close(port_id_);
      port_open_ = false;
    }
    for (auto& [node, pool] : pools_) rte_mempool_free(pool);
    pools_.clear();
    if (eal_up_) {
      rte_eal_cleanup();
      eal_up_ = false;
    }
    if (remove_dir_) {
      remove_runtime_dir(runtime_dir_);
      remove_dir_ = false;
    }
  }

  std::uint16_t port_id_ = 0;
  std::uint32_t queues_ = 0;
  bool eal_up_ = false;
  bool port_open_ = false;
  bool port_started_ = false;
  bool remove_dir_ = false;
  std::string runtime_dir_;
  std::string device_;
  std::string driver_;
  std::map<int, rte_mempool*> pools_;  // by NUMA node
  std::vector<std::unique_ptr<DpdkPort>> ports_;
  std::vector<int> xsk_fds_;  // net_af_xdp's AF_XDP sockets (owned by the driver), for their statistics
};

// The AF_XDP sockets open in this process. With backend dpdk the only ones are those the
// net_af_xdp driver made for its queues (the xdp backend is not loaded alongside).
std::vector<int> af_xdp_sockets() {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  const int own = dirfd(dir);
  while (dirent* entry = readdir(dir)) {
    const int fd = std::atoi(entry->d_name);
    if (entry->d_name[0] == '.' || fd == own) continue;
    int domain = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_XDP) fds.push_back(fd);
  }
  closedir(dir);
  return fds;
}

int node_of_core(int core) {
  if (core < 0 || numa_available() < 0) return -1;
  return numa_node_of_cpu(core);
}

}  // namespace

void dpdk_register_thread_slow() noexcept {
  // One attempt per thread; the destructor hands the lcore id back when the thread ends.
  struct Registration {
    bool tried = false;
    bool registered = false;
    ~Registration() {
      if (registered) rte_thread_unregister();
    }
  };
  thread_local Registration registration;
  if (registration.tried) return;
  registration.tried = true;
  if (rte_thread_register() == 0) {
    registration.registered = true;
  } else {
    AXON_LOG_WARN(kLog, "rte_thread_register failed (%s): this thread runs without a mempool cache",
                  rte_strerror(rte_errno));
  }
}

std::vector<std::string> dpdk_eal_arguments(const DpdkOptions& options) {
  std::vector<std::string> args{"axon-dataplane"};
  // Main lcore 0 is the control thread: let it float over the process's CPUs instead of
  // being pinned to one of the poll cores.
  args.push_back("--lcores=0@(" + allowed_cpus() + ")");
  args.push_back("--file-prefix=" + options.file_prefix);
  if (options.in_memory) {
    args.emplace_back("--in-memory");
  } else {
    // Hugepage files are unlinked once mapped, so a killed process leaves none behind.
    args.emplace_back("--huge-unlink");
  }
  if (!options.socket_mem.empty()) args.push_back("--socket-mem=" + options.socket_mem);
  if (options.allow.empty()) {
    // Only devices named in the config: never take over a PCI device by accident.
    args.emplace_back("--no-pci");
  }
  for (const std::string& address : options.allow) {
    args.emplace_back("-a");
    args.push_back(address);
  }
  for (const std::string& vdev : options.vdevs) args.push_back("--vdev=" + vdev);
  if (!options.telemetry) args.emplace_back("--no-telemetry");
  for (const std::string& extra : options.extra_args) args.push_back(extra);
  return args;
}

Result<std::unique_ptr<DpdkRuntime>, PortError> open_dpdk(const DpdkOptions& options) {
  if (options.queues == 0 || options.queues > RTE_MAX_QUEUES_PER_PORT) {
    return fail(PortError::invalid_argument, "DPDK needs 1 to " + std::to_string(RTE_MAX_QUEUES_PER_PORT) + " queues");
  }
  if (!options.cores.empty() && options.cores.size() != options.queues) {
    return fail(PortError::invalid_argument, "give one core per DPDK queue");
  }
  if (options.allow.empty() && options.vdevs.empty()) {
    return fail(PortError::interface_not_found,
                "no DPDK device configured: bind the NIC to vfio-pci (dpdk-devbind.py -b vfio-pci <pci address>) and "
                "list it in [dpdk] allow, or add a vdev to [dpdk] vdevs (e.g. \"net_af_xdp0,iface=eth0\")");
  }
  for (const std::string& vdev : options.vdevs) {
    const std::string interface = vdev_interface(vdev);
    if (!interface.empty() && if_nametoindex(interface.c_str()) == 0) {
      return fail(PortError::interface_not_found, "[dpdk] vdev '" + vdev + "' names interface '" + interface +
                                                      "', which does not exist; check `ip link` and [dpdk] vdevs");
    }
  }
  if (g_eal_claimed.exchange(true)) {
    return fail(PortError::invalid_argument,
                "the DPDK EAL was already initialised in this process; it can be initialised only once");
  }

  auto runtime = std::make_unique<DpdkRuntimeImpl>();
  runtime->runtime_dir_ = expected_runtime_dir(options.file_prefix);
  // An existing runtime dir is either a live DPDK process's (its telemetry socket answers)
  // or what a killed one left behind, which is removed now so it does not pile up.
  if (path_exists(runtime->runtime_dir_)) {
    if (socket_answers(runtime->runtime_dir_ + "/dpdk_telemetry.v2")) {
      return fail(PortError::invalid_argument, "a running DPDK process already uses file prefix '" +
                                                   options.file_prefix + "' (" + runtime->runtime_dir_ +
                                                   "); give this data plane its own [dpdk] file_prefix");
    }
    AXON_LOG_INFO(kLog, "removing %s, left behind by a DPDK process that did not exit cleanly",
                  runtime->runtime_dir_.c_str());
    remove_runtime_dir(runtime->runtime_dir_);
  }
  runtime->remove_dir_ = true;

  std::vector<std::string> args = dpdk_eal_arguments(options);
  AXON_LOG_INFO(kLog, "EAL arguments: %s", join(args, " ").c_str());
  // The EAL may reorder argv: give it private copies.
  std::vector<std::vector<char>> storage;
  std::vector<char*> argv;
  for (const std::string& arg : args) {
    storage.emplace_back(arg.begin(), arg.end());
    storage.back().push_back('\0');
  }
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  if (rte_eal_init(int(args.size()), argv.data()) < 0) {
    const int err = rte_errno;
    // A failed rte_eal_init cannot be undone with rte_eal_cleanup; remove its files.
    runtime->teardown();
    const std::string detail = std::string(rte_strerror(err)) + "; EAL arguments: " + join(args, " ");
    switch (err) {
      case ENOMEM:
        return fail(PortError::no_memory,
                    "DPDK could not reserve its hugepage memory (" + detail + "): " + hugepage_hint());
      case EINVAL:
        return fail(PortError::invalid_argument, "DPDK rejected its EAL arguments (" + detail +
                                                     "); see the EAL message above and fix [dpdk] eal_args, "
                                                     "allow, vdevs or socket_mem");
      case ENOTSUP:
      case ENODEV:
        return fail(PortError::interface_not_found,
                    "DPDK could not probe a device (" + detail + "); check [dpdk] allow and vdevs");
      case EACCES:
      case EPERM:
        return fail(PortError::invalid_argument,
                    "DPDK lacks privileges (" + detail + "); run as root or grant CAP_SYS_ADMIN/CAP_IPC_LOCK");
      default: return fail(PortError::invalid_argument, "DPDK EAL initialisation failed (" + detail + ")");
    }
  }
  runtime->eal_up_ = true;
  runtime->runtime_dir_ = rte_eal_get_runtime_dir();

  // A vdev that failed to probe does not always fail rte_eal_init: check each one exists.
  for (const std::string& vdev : options.vdevs) {
    const std::string name = vdev.substr(0, vdev.find(','));
    std::uint16_t id = 0;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0) {
      return fail(PortError::interface_not_found, "[dpdk] vdev '" + vdev +
                                                      "' did not come up as an ethdev port; see the driver's "
                                                      "message above (a wrong driver name or argument?)");
    }
  }
  const std::uint16_t available = rte_eth_dev_count_avail();
  if (available == 0) {
    return fail(PortError::interface_not_found,
                "no DPDK port came up from [dpdk] allow = [" + join(options.allow, ", ") +
                    "]: bind the NIC to vfio-pci (dpdk-devbind.py -b vfio-pci <address>) and check the address");
  }
  if (available > 1) {
    return fail(PortError::invalid_argument, std::to_string(available) +
                                                 " DPDK ports came up; axon drives one: list a single device in "
                                                 "[dpdk] allow or vdevs");
  }
  const std::uint16_t port_id = std::uint16_t(rte_eth_find_next(0));
  runtime->port_id_ = port_id;
  runtime->port_open_ = true;
  char name[RTE_ETH_NAME_MAX_LEN] = {};
  rte_eth_dev_get_name_by_port(port_id, name);
  runtime->device_ = name;

  rte_eth_dev_info info{};
  if (int rc = rte_eth_dev_info_get(port_id, &info); rc != 0) {
    return fail(PortError::socket_failed, "cannot query DPDK port " + runtime->device_ + ": " + rte_strerror(-rc));
  }
  runtime->driver_ = info.driver_name != nullptr ? info.driver_name : "?";
  if (options.queues > info.max_rx_queues || options.queues > info.max_tx_queues) {
    return fail(PortError::invalid_argument,
                runtime->device_ + " offers " + std::to_string(info.max_rx_queues) + " RX / " +
                    std::to_string(info.max_tx_queues) + " TX queues, fewer than the " +
                    std::to_string(options.queues) +
                    " in [dataplane] queues (for net_af_xdp, add queue_count=N to the vdev)");
  }

  // One pool per NUMA node the lcores run on, so every mbuf an lcore touches is local.
  const int port_node = rte_eth_dev_socket_id(port_id) >= 0 ? rte_eth_dev_socket_id(port_id) : 0;
  std::vector<int> queue_node(options.queues, port_node);
  for (std::uint32_t q = 0; q < options.queues && q < options.cores.size(); ++q) {
    const int node = node_of_core(options.cores[q]);
    if (node >= 0) queue_node[q] = node;
  }
  std::uint16_t rx_desc = options.rx_descriptors;
  std::uint16_t tx_desc = options.tx_descriptors;
  if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rx_desc, &tx_desc); rc != 0) {
    return fail(PortError::socket_failed,
                "descriptor counts rejected by " + runtime->device_ + ": " + rte_strerror(-rc));
  }
  std::map<int, std::uint32_t> queues_on_node;
  for (int node : queue_node) ++queues_on_node[node];
  for (const auto& [node, count] : queues_on_node) {
    // Each queue can hold a full RX ring and a full TX ring, plus every lcore's cache.
    const std::uint64_t needed = std::uint64_t(count) * (rx_desc + tx_desc + DpdkPort::kMaxBurst * 2) +
                                 std::uint64_t(count) * options.mbuf_cache;
    if (options.mbufs < needed) {
      return fail(PortError::invalid_argument, "[dpdk] mbufs = " + std::to_string(options.mbufs) + " is too few for " +
                                                   std::to_string(count) + " queue(s) of " + std::to_string(rx_desc) +
                                                   "+" + std::to_string(tx_desc) + " descriptors: use at least " +
                                                   std::to_string(needed));
    }
    const std::string pool_name = "axon_mbufs_n" + std::to_string(node);
    rte_mempool* pool = rte_pktmbuf_pool_create(pool_name.c_str(), options.mbufs, options.mbuf_cache, 0,
                                                RTE_MBUF_DEFAULT_BUF_SIZE, node);
    if (pool == nullptr && rte_errno == ENOMEM) {
      return fail(PortError::no_memory, "cannot place " + std::to_string(options.mbufs) + " mbufs on NUMA node " +
                                            std::to_string(node) + " hugepages: " + hugepage_hint());
    }
    if (pool == nullptr) {
      return fail(PortError::no_memory, "creating mbuf pool " + pool_name + " failed: " + rte_strerror(rte_errno));
    }
    runtime->pools_[node] = pool;
  }

  rte_eth_conf conf{};
  std::string features;
  const std::uint64_t rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
  if (options.queues > 1 && rss_hf != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
    features += " rss";
    if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH) {
      conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_RSS_HASH;
      features += " rss-hash";
    }
  } else if (options.queues > 1) {
    AXON_LOG_INFO(kLog,
                  "%s has no RSS of its own: each DPDK queue gets what the device steers to it (for net_af_xdp, "
                  "the NIC's own RSS on the kernel queues)",
                  runtime->device_.c_str());
  }
  // Every TX mbuf of a queue comes from one pool with refcount 1: the driver may skip the
  // per-mbuf checks when it frees them.
  if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE) {
    conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
    features += " fast-free";
  }
  if (int rc = rte_eth_dev_configure(port_id, std::uint16_t(options.queues), std::uint16_t(options.queues), &conf);
      rc != 0) {
    return fail(PortError::socket_failed, "configuring " + runtime->device_ + " with " +
                                              std::to_string(options.queues) +
                                              " queue(s) failed: " + rte_strerror(-rc));
  }
  for (std::uint32_t q = 0; q < options.queues; ++q) {
    rte_mempool* pool = runtime->pools_[queue_node[q]];
    if (int rc = rte_eth_rx_queue_setup(port_id, std::uint16_t(q), rx_desc, unsigned(queue_node[q]), nullptr, pool);
        rc != 0) {
      return fail(PortError::socket_failed,
                  "RX queue " + std::to_string(q) + " of " + runtime->device_ + ": " + rte_strerror(-rc));
    }
    rte_eth_txconf txconf = info.default_txconf;
    txconf.offloads = conf.txmode.offloads;
    if (int rc = rte_eth_tx_queue_setup(port_id, std::uint16_t(q), tx_desc, unsigned(queue_node[q]), &txconf);
        rc != 0) {
      return fail(PortError::socket_failed,
                  "TX queue " + std::to_string(q) + " of " + runtime->device_ + ": " + rte_strerror(-rc));
    }
  }
  if (int rc = rte_eth_dev_start(port_id); rc != 0) {
    return fail(PortError::socket_failed,
                "starting " + runtime->device_ + " failed: " + rte_strerror(-rc) + "; see the driver's message above");
  }
  runtime->port_started_ = true;
  if (runtime->driver_ == "net_af_xdp") runtime->xsk_fds_ = af_xdp_sockets();
  // Drivers without rte_eth_tx_done_cleanup say so with -ENOTSUP; do not ask them again.
  const bool tx_cleanup = rte_eth_tx_done_cleanup(port_id, 0, 0) != -ENOTSUP;

  for (std::uint32_t q = 0; q < options.queues; ++q) {
    PortInfo port_info;
    port_info.backend = "dpdk";
    port_info.mode = runtime->driver_;
    port_info.interface = runtime->device_;
    port_info.queue = q;
    port_info.frame_capacity = RTE_MBUF_DEFAULT_DATAROOM;
    runtime->ports_.push_back(std::make_unique<DpdkPort>(port_id, std::uint16_t(q), runtime->pools_[queue_node[q]],
                                                         std::move(port_info), tx_cleanup));
  }
  runtime->queues_ = options.queues;
  rte_eth_link link{};
  (void)rte_eth_link_get_nowait(port_id, &link);
  AXON_LOG_INFO(kLog, "%s (%s): %u queue(s), %u RX / %u TX descriptors, %u mbufs per node, link %s, offloads:%s",
                runtime->device_.c_str(), runtime->driver_.c_str(), options.queues, unsigned(rx_desc),
                unsigned(tx_desc), options.mbufs, link.link_status ? "up" : "down",
                features.empty() ? " none" : features.c_str());
  if (options.telemetry) {
    AXON_LOG_INFO(kLog, "telemetry socket: %s/dpdk_telemetry.v2 (dpdk-telemetry.py -f %s)",
                  runtime->runtime_dir_.c_str(), options.file_prefix.c_str());
  }
  return std::unique_ptr<DpdkRuntime>(std::move(runtime));
}

}  // namespace axon::dataplane

// LeakSanitizer hook (read only in sanitizer builds): DPDK 22.11's net_af_xdp closes its
// AF_XDP socket and frees its own umem bookkeeping but never calls xsk_umem__delete, so the
// 80-byte struct libxdp allocated for the umem outlives rte_eth_dev_close. Not ours to free.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:xsk_umem__create\n";
}
