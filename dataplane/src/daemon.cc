// The data plane's control thread. Everything slow lives here: setup, worker handoff,
// death detection, SIGHUP reloads, exporting XDP counters, and the ordered shutdown
// (detach XDP first so no new request arrives, then drain, then close).
#include "daemon.h"

#include <linux/if_xdp.h>
#include <net/if.h>
#include <numa.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "axon/bpf/xdp_program.h"
#include "axon/common/clock.h"
#include "axon/common/cpu.h"
#include "axon/common/log.h"
#include "axon/common/systemd.h"
#include "axon/dataplane/config.h"
#include "axon/dataplane/credits.h"
#include "axon/dataplane/engine.h"
#include "axon/dataplane/port.h"
#include "axon/dataplane/stats.h"
#include "axon/dataplane/trace_ring.h"
#include "axon/shm/handoff.h"
#include "axon/shm/liveness.h"

#include "control_server.h"
#include "dpdk/dpdk_options.h"
#include "instance_lock.h"
#include "privileges.h"
#include "response_cache.h"
#include "slot_grants.h"

namespace axon::dataplane {
namespace {

constexpr const char* kLog = "dataplane";

int nic_numa_node(const std::string& interface) {
  std::ifstream in("/sys/class/net/" + interface + "/device/numa_node");
  int node = -1;
  if (in >> node) return node;
  return -1;
}

bool make_dirs(const std::string& path) {
  std::string partial;
  for (std::size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!partial.empty() && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
    if (i < path.size()) partial += path[i];
  }
  return true;
}

// The valid prefixes of a tenant, normalised (IpPrefix::to_string), so "10.0.0.1/8" and
// "10.0.0.0/8" are one entry, as they are one key in the LPM map.
std::map<std::string, bpf::IpPrefix> parsed_prefixes(const TenantConfig& tenant) {
  std::map<std::string, bpf::IpPrefix> out;
  for (const std::string& text : tenant.prefixes) {
    auto prefix = bpf::IpPrefix::parse(text);
    if (!prefix) {
      AXON_LOG_ERROR(kLog, "tenant %u: %s", tenant.id, prefix.message().c_str());
      continue;
    }
    out.emplace(prefix->to_string(), prefix.value());
  }
  return out;
}

// A tenant's three rate limits: its classes' and its all-classes one (docs/scheduling.md).
struct ScopedRate {
  bpf::RateScope scope = bpf::RateScope::all;
  std::uint32_t pps = 0;
  std::uint32_t burst = 0;
};

std::array<ScopedRate, 3> scoped_rates(const TenantConfig& t) {
  return {ScopedRate{bpf::RateScope::interactive, t.interactive_rate_pps, t.interactive_burst},
          ScopedRate{bpf::RateScope::background, t.background_rate_pps, t.background_burst},
          ScopedRate{bpf::RateScope::all, t.rate_pps, t.burst}};
}

// Brings the XDP maps from `previous` to `next` without a gap: every prefix and rate of `next`
// is written first (an update of a key that stays is a no-op for the packets that match it),
// and only then is what `next` no longer has removed. A source allowed before and after is
// never denied in between (issue 11 item 9: remove-all-then-add dropped valid requests).
void apply_tenants(bpf::XdpProgram& program, const std::vector<TenantConfig>& previous,
                   const std::vector<TenantConfig>& next) {
  std::map<std::uint32_t, std::map<std::string, bpf::IpPrefix>> kept;
  std::map<std::uint32_t, const TenantConfig*> next_by_id;
  for (const TenantConfig& t : next) {
    auto& prefixes = kept[t.id] = parsed_prefixes(t);
    next_by_id[t.id] = &t;
    for (const auto& [text, prefix] : prefixes) {
      if (auto ok = program.allow_prefix(t.id, prefix); !ok) {
        AXON_LOG_ERROR(kLog, "tenant %u: %s", t.id, ok.message().c_str());
      }
    }
    const TenantConfig* before = nullptr;
    for (const TenantConfig& old : previous) before = old.id == t.id ? &old : before;
    for (const ScopedRate& r : scoped_rates(t)) {
      if (r.pps == 0) continue;
      // An unchanged limit keeps its bucket; a new or changed one starts full.
      bool same = false;
      for (const ScopedRate& b : before != nullptr ? scoped_rates(*before) : std::array<ScopedRate, 3>{}) {
        same = same || (b.scope == r.scope && b.pps == r.pps && b.burst == r.burst);
      }
      if (same) continue;
      if (auto ok = program.set_rate_limit(t.id, r.pps, r.burst, r.scope); !ok) {
        AXON_LOG_ERROR(kLog, "tenant %u: %s", t.id, ok.message().c_str());
      }
    }
  }
  for (const TenantConfig& old : previous) {
    const auto still = kept.find(old.id);
    for (const auto& [text, prefix] : parsed_prefixes(old)) {
      if (still != kept.end() && still->second.contains(text)) continue;
      (void)program.remove_prefix(old.id, prefix);
    }
    const auto next_tenant = next_by_id.find(old.id);
    const auto now = next_tenant == next_by_id.end() ? std::array<ScopedRate, 3>{} : scoped_rates(*next_tenant->second);
    for (const ScopedRate& r : scoped_rates(old)) {
      bool kept_rate = false;
      for (const ScopedRate& n : now) kept_rate = kept_rate || (n.scope == r.scope && n.pps != 0);
      if (r.pps != 0 && !kept_rate) (void)program.clear_rate_limit(old.id, r.scope);
    }
  }
}

// What a valid file can still name wrongly for this host: an interface that does not exist, or
// a core this process cannot run on. Checked by --check too, and before anything is set up (a
// core that does not exist used to cost only a warning, and its lcore ran unpinned).
bool host_has_what_config_names(const DataplaneConfig& config, const std::string& config_path) {
  if (config.backend != "dpdk" && if_nametoindex(config.interface.c_str()) == 0) {
    AXON_LOG_ERROR(kLog, "interface '%s' does not exist; check `ip link` and set [dataplane] interface in %s",
                   config.interface.c_str(), config_path.c_str());
    return false;
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return true;  // cannot tell: pinning will say
  std::string available;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) available += (available.empty() ? "" : ",") + std::to_string(cpu);
  }
  for (int core : config.cores) {
    if (core < 0 || core >= CPU_SETSIZE || !CPU_ISSET(core, &allowed)) {
      AXON_LOG_ERROR(kLog,
                     "core %d in [dataplane] cores does not exist on this host or is not available to this "
                     "process (available: %s); fix cores in %s",
                     core, available.c_str(), config_path.c_str());
      return false;
    }
  }
  return true;
}

// Generic slots and no agents of its own: a control plane will push the tables. Until it does,
// requests are answered with a retryable error (RouteTable::provisional).
bool awaits_control_plane(const DataplaneConfig& config) {
  return config.worker_slots > 0 && config.agents.empty();
}

struct Listener {
  std::uint32_t slot = 0;
  shm::HandoffListener socket;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions options) : options_(std::move(options)) {}
  int run();

 private:
  bool setup();
  bool open_ports(int nic_node);
  bool try_xdp(AfXdpOptions::ZeroCopy zero_copy, int nic_node, std::string& why);
  bool try_uring(int nic_node, std::string& why);
  bool try_dpdk(int nic_node, std::string& why);
  void control_loop();
  void accept_worker(Listener& listener);
  void hand_over(std::size_t index, int fd, pid_t pid, uid_t uid);
  void settle_grants(std::uint64_t now_ns);
  std::string handle_grant(const control::Request& request);
  std::string handle_invalidate_cache(const control::Request& request);
  void reload();
  // Validates and installs tenant/agent tables: routes swapped (QSBR), XDP tenant maps
  // updated. Shared by SIGHUP reloads and the control socket's apply; on failure nothing
  // changes and `error` says why.
  bool install_tables(const std::vector<TenantConfig>& tenants, const std::vector<AgentConfig>& agents,
                      std::string& error, bool provisional = false);
  bool open_control_socket();
  std::string handle_control(const control::Request& request);
  std::vector<control::SlotInfo> slot_infos() const;
  void export_counters();
  void shutdown();
  void notify_status(std::uint64_t now_ns);
  void start_credits();

  DaemonOptions options_;
  DataplaneConfig config_;
  std::optional<InstanceLock> instance_lock_;  // held from before the first socket to exit
  std::optional<StatsFile> stats_file_;        // outlives shared_, which points into it
  // Declared before shared_, so it outlives the route tables that point at its cells; after the
  // stats file, whose worker counters it reads. Refreshed on the control thread.
  std::unique_ptr<CreditRefresher> credits_;
  std::unique_ptr<EngineShared> shared_;
  std::optional<bpf::XdpProgram> program_;
  std::vector<std::unique_ptr<Port>> ports_;
  std::vector<std::unique_ptr<Lcore>> lcores_;
  std::vector<std::thread> threads_;
  std::vector<Listener> listeners_;
  std::optional<SlotGrants> grants_;  // sized once the slots exist
  std::optional<shm::DeathWatch> deaths_;
  int signal_fd_ = -1;
  std::string stats_path_;
  std::optional<TraceMapping> trace_file_;
  // systemd (Type=notify): readiness, a one-line status and the watchdog; no-ops otherwise.
  systemd::Notifier notifier_ = systemd::Notifier::from_environment();
  std::uint64_t status_requests_ = 0;
  std::uint64_t status_at_ns_ = 0;
  std::unique_ptr<control::ControlServer> control_;
  std::uint64_t table_version_ = 0;  // the last applied version; 0 = the config file's tables
  std::uint64_t applies_ = 0;
  std::uint64_t rejected_applies_ = 0;
  std::string backend_;                // "xdp", "uring" or "dpdk", once open_ports chose
  std::string attach_mode_;            // how the XDP program attached (xdp only)
  std::unique_ptr<DpdkRuntime> dpdk_;  // dpdk only; outlives ports_ and lcores_
};

// Loads and configures the XDP program, opens one AF_XDP socket per queue and attaches. On
// failure everything it made is gone again (sockets closed, program detached and unloaded) and
// `why` says what went wrong, so the caller can fall back to another backend.
bool Daemon::try_xdp(AfXdpOptions::ZeroCopy zero_copy, int nic_node, std::string& why) {
  bpf::XdpConfig xdp;
  xdp.ports.fill(0);
  for (std::size_t i = 0; i < config_.ports.size(); ++i) xdp.ports[i] = config_.ports[i];
  xdp.enforce_allowlist = config_.xdp.enforce_allowlist;
  xdp.enforce_rate = config_.xdp.enforce_rate;
  xdp.enforce_credits = config_.xdp.enforce_credits;
  xdp.rx_stamp = config_.xdp.rx_stamp;
  auto undo = [&](std::string message) {
    ports_.clear();
    program_.reset();  // detaches (if attached) and unloads
    why = std::move(message);
    return false;
  };
  auto loaded = bpf::XdpProgram::load(xdp);
  if (!loaded) return undo(loaded.message());
  program_.emplace(std::move(loaded).value());
  apply_tenants(*program_, {}, config_.tenants);
  for (std::size_t i = 0; i < config_.queues.size(); ++i) {
    AfXdpOptions port_options;
    port_options.interface = config_.interface;
    port_options.queue = config_.queues[i];
    port_options.frame_size = config_.xdp.frame_size;
    port_options.frames = config_.xdp.frames;
    port_options.numa_node = nic_node;
    port_options.busy_poll = config_.xdp.busy_poll;
    port_options.zero_copy = zero_copy;
    auto port = open_af_xdp_port(port_options);
    if (!port) {
      if (port.code() == PortError::zero_copy_required) {
        // The port's message ends in advice for a forced zero copy; keep only the kernel's reason.
        const std::string& m = port.message();
        const auto open = m.find('('), close = m.find(')', open == std::string::npos ? 0 : open);
        std::string errno_text = open != std::string::npos && close != std::string::npos
                                     ? " " + m.substr(open, close - open + 1)
                                     : std::string();
        return undo("not supported by " + config_.interface + " queue " + std::to_string(config_.queues[i]) +
                    errno_text);
      }
      return undo(port.message());
    }
    if (auto ok = program_->set_socket(config_.queues[i], af_xdp_socket_fd(*port.value())); !ok) {
      return undo(ok.message());
    }
    ports_.push_back(std::move(port).value());
  }
  auto mode = program_->attach(config_.interface);
  if (!mode) return undo(mode.message());
  attach_mode_ = bpf::to_string(mode.value());
  return true;
}

// One io_uring port (its own SO_REUSEPORT sockets) per lcore.
bool Daemon::try_uring(int nic_node, std::string& why) {
  for (std::size_t i = 0; i < config_.queues.size(); ++i) {
    UringOptions options;
    options.interface = config_.uring.bind_to_device ? config_.interface : std::string();
    options.bind_address = config_.uring.bind_address;
    options.ports = config_.ports;
    options.queue = std::uint32_t(i);
    options.buffers = config_.uring.buffers;
    options.buffer_size = config_.uring.buffer_size;
    options.tx_frames = config_.uring.tx_frames;
    options.frame_size = config_.uring.frame_size;
    options.ring_entries = config_.uring.ring_entries;
    options.socket_buffer = config_.uring.socket_buffer;
    options.numa_node = nic_node;
    auto port = open_uring_port(options);
    if (!port) {
      ports_.clear();
      why = port.message();
      return false;
    }
    ports_.push_back(std::move(port).value());
  }
  return true;
}

// DPDK owns the device: no XDP program. One runtime (EAL, pools, the ethdev port) hands
// out one port per queue; its NUMA placement follows the lcores' cores, not nic_node.
bool Daemon::try_dpdk(int /*nic_node*/, std::string& why) {
  auto runtime = open_dpdk(dpdk_options_from(config_));
  if (!runtime) {
    why = runtime.message();
    return false;
  }
  dpdk_ = std::move(runtime).value();
  for (std::uint32_t i = 0; i < dpdk_->queue_count(); ++i) ports_.push_back(dpdk_->take_port(i));
  AXON_LOG_INFO(kLog, "dpdk: %s, EAL runtime dir %s", dpdk_->describe().c_str(), dpdk_->runtime_dir().c_str());
  return true;
}

// Opens one port per lcore with the configured backend, or with "auto" the best one that
// works here: XDP zero copy, then XDP copy mode, then io_uring sockets. Logs exactly one line
// naming the choice and why each better candidate was passed over.
bool Daemon::open_ports(int nic_node) {
  const std::string& wanted = config_.backend;
  std::string why;
  if (wanted == "xdp") {
    const auto zc = config_.xdp.zero_copy == ZeroCopy::required   ? AfXdpOptions::ZeroCopy::required
                    : config_.xdp.zero_copy == ZeroCopy::disabled ? AfXdpOptions::ZeroCopy::disabled
                                                                  : AfXdpOptions::ZeroCopy::automatic;
    if (!try_xdp(zc, nic_node, why)) {
      AXON_LOG_ERROR(kLog, "backend xdp: %s", why.c_str());
      return false;
    }
    backend_ = "xdp";
    AXON_LOG_INFO(kLog, "backend: xdp %s (configured)", ports_.front()->info().mode.c_str());
    return true;
  }
  if (wanted == "uring") {
    if (!try_uring(nic_node, why)) {
      AXON_LOG_ERROR(kLog, "backend uring: %s", why.c_str());
      return false;
    }
    backend_ = "uring";
    AXON_LOG_INFO(kLog, "backend: uring (configured)");
    return true;
  }
  if (wanted == "dpdk") {
    if (!try_dpdk(nic_node, why)) {
      AXON_LOG_ERROR(kLog, "backend dpdk: %s", why.c_str());
      return false;
    }
    backend_ = "dpdk";
    AXON_LOG_INFO(kLog, "backend: dpdk (configured)");
    return true;
  }
  // auto
  std::string passed_over;
  auto note = [&](const char* candidate, const std::string& reason) {
    passed_over += std::string(passed_over.empty() ? "" : "; ") + candidate + ": " + reason;
  };
  if (config_.xdp.zero_copy == ZeroCopy::disabled) {
    note("xdp zero-copy", "disabled by [xdp] zero_copy = \"off\"");
  } else if (try_xdp(AfXdpOptions::ZeroCopy::required, nic_node, why)) {
    backend_ = "xdp";
    AXON_LOG_INFO(kLog, "backend: xdp zero-copy (auto: the best available)");
    return true;
  } else {
    note("xdp zero-copy", why);
  }
  if (config_.xdp.zero_copy == ZeroCopy::required) {
    note("xdp copy", "forbidden by [xdp] zero_copy = \"on\"");
  } else if (try_xdp(AfXdpOptions::ZeroCopy::disabled, nic_node, why)) {
    backend_ = "xdp";
    AXON_LOG_INFO(kLog, "backend: xdp copy (auto; %s)", passed_over.c_str());
    return true;
  } else {
    note("xdp copy", why);
  }
  if (try_uring(nic_node, why)) {
    backend_ = "uring";
    AXON_LOG_INFO(kLog, "backend: uring (auto; %s)", passed_over.c_str());
    return true;
  }
  note("uring", why);
  AXON_LOG_ERROR(kLog, "backend: none works here (auto; %s); fix one of them or set [dataplane] backend",
                 passed_over.c_str());
  return false;
}

bool Daemon::setup() {
  const std::uint32_t lcore_count = std::uint32_t(config_.queues.size());
  if (!host_has_what_config_names(config_, options_.config_path)) return false;
  int nic_node = config_.numa_node >= 0 ? config_.numa_node : nic_numa_node(config_.interface);
  if (numa_available() >= 0) {
    for (int core : config_.cores) {
      int core_node = numa_node_of_cpu(core);
      if (nic_node >= 0 && core_node >= 0 && core_node != nic_node) {
        AXON_LOG_WARN(kLog,
                      "core %d is on NUMA node %d but %s is on node %d: every packet crosses the "
                      "interconnect; pick cores from node %d",
                      core, core_node, config_.interface.c_str(), nic_node, nic_node);
      }
    }
  }
  if (!make_dirs(config_.run_dir + "/workers")) {
    AXON_LOG_ERROR(kLog, "cannot create %s/workers: %s; set run_dir to a writable directory", config_.run_dir.c_str(),
                   std::strerror(errno));
    return false;
  }
  // Before any socket or the stats file: a second instance must not replace the first one's.
  auto lock = InstanceLock::acquire(config_.run_dir);
  if (!lock) {
    AXON_LOG_ERROR(kLog, "%s", lock.message().c_str());
    return false;
  }
  instance_lock_.emplace(std::move(lock).value());
  stats_path_ = config_.run_dir + "/dataplane.stats";
  auto stats = StatsFile::create(stats_path_, lcore_count, std::uint32_t(config_.workers.size()));
  if (!stats) {
    AXON_LOG_ERROR(kLog, "%s", stats.message().c_str());
    return false;
  }
  stats_file_.emplace(std::move(stats).value());
  shared_ = std::make_unique<EngineShared>(config_, lcore_count);
  shared_->stats = stats_file_->view();
  // Sampled traces (docs/observability.md, "Traces"): the control plane consumes the rings.
  auto traces = create_trace_file(config_.run_dir + "/dataplane.traces", lcore_count, kTraceRingCapacity,
                                  std::uint32_t(config_.telemetry.trace_sample_rate * 1e6 + 0.5));
  if (!traces) {
    AXON_LOG_ERROR(kLog, "%s", traces.message().c_str());
    return false;
  }
  trace_file_.emplace(std::move(traces).value());
  shared_->traces = &*trace_file_;
  std::snprintf(shared_->stats.header->interface, sizeof shared_->stats.header->interface, "%s",
                config_.interface.c_str());

  if (auto routes = RouteTable::build(config_); !routes) {
    AXON_LOG_ERROR(kLog, "%s", routes.message().c_str());
    return false;
  }
  if (auto slots = create_worker_slots(*shared_, lcore_count, nic_node); !slots) {
    AXON_LOG_ERROR(kLog, "%s", slots.message().c_str());
    return false;
  }

  if (!open_ports(nic_node)) return false;
  std::snprintf(shared_->stats.header->backend, sizeof shared_->stats.header->backend, "%s", backend_.c_str());
  std::snprintf(shared_->stats.header->port_mode, sizeof shared_->stats.header->port_mode, "%s",
                ports_.front()->info().mode.c_str());
  if (program_ && program_->attached()) shared_->stats.header->xdp_attached.store(1, std::memory_order_relaxed);
  shared_->stats.header->stage_latency.store(shared_->config.telemetry.stage_latency ? 1u : 0u,
                                             std::memory_order_relaxed);
  start_credits();
  // Without the XDP program, the tenant allowlist, rate limits and credits are enforced by the lcores.
  auto routes = RouteTable::build(config_, !program_.has_value(), credits_.get());
  if (!routes) {
    AXON_LOG_ERROR(kLog, "%s", routes.message().c_str());
    return false;
  }
  routes.value()->set_provisional(awaits_control_plane(config_));
  shared_->routes.publish(std::move(routes).value());

  for (std::uint32_t i = 0; i < lcore_count; ++i) {
    lcores_.push_back(std::make_unique<Lcore>(i, *ports_[i], *shared_));
    shared_->lcores.push_back(lcores_.back().get());
  }
  Lcore::connect(shared_->lcores);

  auto watch = shm::DeathWatch::create();
  if (!watch) {
    AXON_LOG_ERROR(kLog, "%s", watch.message().c_str());
    return false;
  }
  deaths_.emplace(std::move(watch).value());
  grants_.emplace(shared_->workers.size());
  for (const auto& slot : shared_->workers) {
    std::string path = config_.run_dir + "/workers/" + slot->name + ".sock";
    auto listener = shm::HandoffListener::listen(path);
    if (!listener) {
      AXON_LOG_ERROR(kLog, "%s", listener.message().c_str());
      return false;
    }
    listeners_.push_back(Listener{slot->index, std::move(listener).value()});
  }
  if (!open_control_socket()) return false;

  // Setup is done: keep only what the run time needs, before the lcore threads exist so
  // they inherit the reduced sets (capabilities are per thread).
  if (auto kept = drop_to(runtime_capabilities(backend_)); kept) {
    AXON_LOG_INFO(kLog, "capabilities after setup: %s (backend %s)", kept->c_str(), backend_.c_str());
  } else {
    AXON_LOG_WARN(kLog, "%s", kept.message().c_str());
  }

  for (std::uint32_t i = 0; i < lcore_count; ++i) {
    const int core = config_.cores[i];
    threads_.emplace_back([this, i, core, nic_node] {
      if (auto pinned = pin_this_thread(core); !pinned) {
        AXON_LOG_WARN(kLog, "lcore %u: %s", i, pinned.message().c_str());
      }
      if (nic_node >= 0 && numa_available() >= 0) numa_set_preferred(nic_node);
      char name[16];
      std::snprintf(name, sizeof name, "axon-lcore%u", i);
      pthread_setname_np(pthread_self(), name);
      lcores_[i]->run();
    });
  }
  shared_->stats.header->ready.store(1, std::memory_order_release);
  AXON_LOG_INFO(
      kLog,
      "ready: %s, %zu queue(s), %zu worker slot(s), %zu agent(s), ports %s, backend %s (%s%s%s), worker sockets in "
      "%s/workers",
      config_.interface.c_str(), config_.queues.size(), config_.workers.size(), config_.agents.size(),
      [&] {
        std::string s;
        for (auto p : config_.ports) {
          if (!s.empty()) s.push_back(',');
          s.append(std::to_string(p));
        }
        return s;
      }()
          .c_str(),
      backend_.c_str(), ports_.front()->info().mode.c_str(), attach_mode_.empty() ? "" : ", XDP ", attach_mode_.c_str(),
      config_.run_dir.c_str());
  return true;
}

void Daemon::accept_worker(Listener& listener) {
  auto conn = listener.socket.accept(0);
  if (!conn) return;
  int fd = conn.value();
  WorkerSlot& slot = *shared_->workers[listener.slot];
  auto cred = shm::peer_credentials(fd);
  if (!cred) {
    AXON_LOG_WARN(kLog, "worker slot '%s': %s", slot.name.c_str(), cred.message().c_str());
    close(fd);
    return;
  }
  switch (grants_->check(listener.slot, cred->pid)) {
    case SlotGrants::Verdict::allow: hand_over(listener.slot, fd, cred->pid, cred->uid); return;
    case SlotGrants::Verdict::refuse:
      AXON_LOG_WARN(kLog, "worker slot '%s' is granted to another process; refusing pid %d uid %u", slot.name.c_str(),
                    int(cred->pid), unsigned(cred->uid));
      close(fd);
      return;
    case SlotGrants::Verdict::wait: break;
  }
  const std::uint64_t deadline = monotonic_ns() + std::uint64_t(control::kGrantWaitMs) * 1'000'000u;
  if (auto held = grants_->hold(listener.slot, fd, cred->pid, deadline); !held) {
    AXON_LOG_WARN(kLog, "worker slot '%s': refusing pid %d: %s", slot.name.c_str(), int(cred->pid),
                  held.message().c_str());
    close(fd);
  }
}

// Sends the slot's segment to the connected worker `fd` (closed here in every case).
void Daemon::hand_over(std::size_t index, int fd, pid_t pid, uid_t uid) {
  WorkerSlot& slot = *shared_->workers[index];
  if (slot.state.load(std::memory_order_acquire) != std::uint32_t(WorkerSlotState::vacant)) {
    AXON_LOG_WARN(kLog, "worker slot '%s' already has a live worker (pid %d); refusing pid %d", slot.name.c_str(),
                  slot.stats != nullptr ? slot.stats->pid.load() : -1, int(pid));
    close(fd);
    return;
  }
  shm::HandoffMessage message;
  message.worker_id = slot.index;
  message.layout_version = shm::kLayoutVersion;
  message.generation = slot.channel->generation();
  message.segment_size = slot.channel->view().size;
  message.sender_pid = std::int32_t(getpid());
  // Watch first: a worker that dies right after the handoff must still be reclaimed.
  if (auto watched = deaths_->watch(pid, slot.index); !watched) {
    AXON_LOG_WARN(kLog, "worker slot '%s': %s", slot.name.c_str(), watched.message().c_str());
    close(fd);
    return;
  }
  if (auto sent = shm::send_segment(fd, slot.channel->segment_fd(), message); !sent) {
    AXON_LOG_WARN(kLog, "worker slot '%s': %s", slot.name.c_str(), sent.message().c_str());
    deaths_->forget(slot.index);
    close(fd);
    return;
  }
  close(fd);
  if (slot.stats != nullptr) slot.stats->pid.store(pid, std::memory_order_relaxed);
  slot.state.store(std::uint32_t(WorkerSlotState::alive), std::memory_order_release);
  if (slot.stats != nullptr) slot.stats->state.store(std::uint32_t(WorkerSlotState::alive), std::memory_order_release);
  AXON_LOG_INFO(kLog, "worker '%s' attached: pid %d, uid %u, segment generation %llu", slot.name.c_str(), int(pid),
                unsigned(uid), static_cast<unsigned long long>(message.generation));
}

// Hands over or refuses the connections that waited for their grants.
void Daemon::settle_grants(std::uint64_t now_ns) {
  if (grants_->waiting() == 0) return;
  grants_->settle(
      now_ns,
      [this](std::size_t index, int fd, pid_t pid) {
        auto cred = shm::peer_credentials(fd);
        hand_over(index, fd, pid, cred ? cred->uid : uid_t(-1));
      },
      [this](std::size_t index, int fd, pid_t pid, const char* why) {
        AXON_LOG_WARN(kLog, "worker slot '%s': refusing pid %d: %s", shared_->workers[index]->name.c_str(), int(pid),
                      why);
        close(fd);
      });
}

// The control plane names the one process that may claim a slot (op grant).
std::string Daemon::handle_grant(const control::Request& request) {
  for (const auto& slot : shared_->workers) {
    if (slot->name != request.slot) continue;
    if (auto granted = grants_->grant(slot->index, request.pid); !granted) {
      return control::encode_error("grant of slot '" + request.slot + "': " + granted.message());
    }
    settle_grants(monotonic_ns());
    return control::encode_ok();
  }
  return control::encode_error("grant: no worker slot named '" + request.slot + "'");
}

// The control plane drops an agent's response-cache entries, or all of them (op invalidate_cache):
// one generation bump each; every lcore finds its stale entries on their next lookup.
std::string Daemon::handle_invalidate_cache(const control::Request& request) {
  if (request.all) {
    shared_->cache_generations->invalidate_all();
    AXON_LOG_INFO(kLog, "response cache invalidated for every agent");
    return control::encode_ok();
  }
  for (const AgentConfig& agent : config_.agents) {
    if (agent.id != request.agent_id) continue;
    shared_->cache_generations->invalidate(agent.id);
    AXON_LOG_INFO(kLog, "response cache invalidated for agent %u ('%s')", agent.id, agent.name.c_str());
    return control::encode_ok();
  }
  return control::encode_error("invalidate_cache: no agent with id " + std::to_string(request.agent_id) +
                               " in the data plane's tables; list them with GET /v1/routes");
}

// The credit refresher reads the workers' counters from the stats file and writes budgets to the
// XDP program's credit map (xdp backend) and to its own cells (every backend's RouteTable).
void Daemon::start_credits() {
  StatsView stats = shared_->stats;
  const std::size_t worker_count = config_.workers.size();
  auto reader = [stats, worker_count](std::size_t w) {
    WorkerLoad load;
    if (w >= worker_count) return load;
    load.completed = stats.workers[w].completed.load(std::memory_order_relaxed);
    load.depth = stats.workers[w].depth.load(std::memory_order_relaxed);
    return load;
  };
  CreditSink sink;
  CreditClear clear;
  if (program_ && config_.xdp.enforce_credits) {
    sink = [this](std::uint32_t id, std::int64_t credits, std::uint32_t retry_after_us) {
      if (auto ok = program_->set_credits(id, credits, retry_after_us); !ok) {
        AXON_LOG_ERROR(kLog, "tenant %u: %s", id, ok.message().c_str());
      }
    };
    clear = [this](std::uint32_t id) { (void)program_->clear_credits(id); };
  }
  credits_ = std::make_unique<CreditRefresher>(config_.credits, reader, sink, clear);
  credits_->configure(config_.tenants, config_.agents, config_.workers, monotonic_ns());
}

void Daemon::export_counters() {
  std::optional<DeviceCounters> device;
  if (dpdk_) {
    device = dpdk_->device_counters();
  } else if (backend_ == "xdp") {
    // The kernel's side of each AF_XDP socket: frames it could not deliver because our RX
    // ring was full or the fill ring empty (a stalled or overloaded lcore), or that it dropped.
    device.emplace();
    for (const auto& port : ports_) {
      xdp_statistics st{};
      socklen_t len = sizeof st;
      if (getsockopt(af_xdp_socket_fd(*port), SOL_XDP, XDP_STATISTICS, &st, &len) != 0) continue;
      device->rx_missed += st.rx_ring_full;
      device->rx_nombuf += st.rx_fill_ring_empty_descs;
      // rx_dropped also counts every frame lost to an empty fill ring (already in rx_nombuf):
      // what remains are frames too large for a UMEM frame.
      device->rx_errors +=
          (st.rx_dropped > st.rx_fill_ring_empty_descs ? st.rx_dropped - st.rx_fill_ring_empty_descs : 0) +
          st.rx_invalid_descs;
      device->tx_errors += st.tx_invalid_descs;
    }
  }
  if (device) {
    StatsHeader& h = *shared_->stats.header;
    h.device_rx_missed.store(device->rx_missed, std::memory_order_relaxed);
    h.device_rx_nombuf.store(device->rx_nombuf, std::memory_order_relaxed);
    h.device_rx_errors.store(device->rx_errors, std::memory_order_relaxed);
    h.device_tx_errors.store(device->tx_errors, std::memory_order_relaxed);
  }
  if (!program_) {
    shared_->stats.header->heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
    return;
  }
  auto counters = program_->read_counters();
  if (counters) {
    for (std::size_t i = 0; i < protocol::kReasonCount; ++i) {
      shared_->stats.header->xdp_packets[i].store(counters->packets[i], std::memory_order_relaxed);
      shared_->stats.header->xdp_bytes[i].store(counters->bytes[i], std::memory_order_relaxed);
      for (std::size_t c = 0; c < kClassCount; ++c) {
        shared_->stats.header->xdp_class_packets[c][i].store(counters->class_packets[c][i], std::memory_order_relaxed);
        shared_->stats.header->xdp_class_bytes[c][i].store(counters->class_bytes[c][i], std::memory_order_relaxed);
      }
    }
  }
  shared_->stats.header->heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
}

void Daemon::reload() {
  auto next = load_config(options_.config_path);
  if (!next) {
    AXON_LOG_ERROR(kLog, "reload rejected, keeping the running configuration: %s", next.message().c_str());
    return;
  }
  bool same_workers = next->workers.size() == config_.workers.size();
  for (std::size_t i = 0; same_workers && i < config_.workers.size(); ++i) {
    same_workers = next->workers[i].name == config_.workers[i].name;
  }
  if (!same_workers) {
    AXON_LOG_ERROR(kLog,
                   "reload rejected: the [[workers]] list or worker_slots changed, which needs a restart; routes "
                   "unchanged");
    return;
  }
  // Tables a control plane applied are its own: the file must not replace them (it usually
  // has none, and every request would then be refused until the control plane pushed again).
  if (table_version_ != 0) {
    AXON_LOG_WARN(kLog,
                  "reload of %s: the tenant and agent tables stay as the control plane applied them (version "
                  "%llu); the file's [[tenants]] and [[agents]] apply only to a data plane without a control plane",
                  options_.config_path.c_str(), static_cast<unsigned long long>(table_version_));
    return;
  }
  std::string error;
  if (!install_tables(next->tenants, next->agents, error, awaits_control_plane(next.value()))) {
    AXON_LOG_ERROR(kLog, "reload rejected: %s", error.c_str());
    return;
  }
  AXON_LOG_INFO(kLog, "reloaded %s: %zu agent route(s), %zu tenant(s)", options_.config_path.c_str(),
                config_.agents.size(), config_.tenants.size());
}

bool Daemon::install_tables(const std::vector<TenantConfig>& tenants, const std::vector<AgentConfig>& agents,
                            std::string& error, bool provisional) {
  if (auto checked = check_tables(tenants, agents, config_.workers); !checked) {
    error = checked.message();
    return false;
  }
  DataplaneConfig next = config_;
  next.tenants = tenants;
  next.agents = agents;
  // Credits first: the new table points at the refresher's cells of the new tenants.
  credits_->configure(tenants, agents, config_.workers, monotonic_ns());
  auto routes = RouteTable::build(next, !program_.has_value(), credits_.get());
  if (!routes) {
    error = routes.message();
    return false;
  }
  routes.value()->set_provisional(provisional);
  // Before the new table is visible: no lcore serves an entry of the old configuration under it.
  invalidate_changed(*shared_->cache_generations, config_.agents, agents);
  shared_->routes.publish(std::move(routes).value());
  if (program_) apply_tenants(*program_, config_.tenants, tenants);
  config_.agents = agents;
  config_.tenants = tenants;
  return true;
}

bool Daemon::open_control_socket() {
  auto server = control::ControlServer::listen(control::control_socket_path(config_.run_dir), config_.control_uids);
  if (!server) {
    AXON_LOG_ERROR(kLog, "%s", server.message().c_str());
    return false;
  }
  control_ = std::move(server).value();
  return true;
}

std::vector<control::SlotInfo> Daemon::slot_infos() const {
  std::vector<control::SlotInfo> slots;
  slots.reserve(shared_->workers.size());
  for (const auto& slot : shared_->workers) {
    control::SlotInfo info;
    info.name = slot->name;
    info.state = to_string(WorkerSlotState(slot->state.load(std::memory_order_acquire)));
    if (const WorkerStats* s = slot->stats; s != nullptr) {
      info.pid = s->pid.load(std::memory_order_relaxed);
      info.generation = s->generation.load(std::memory_order_relaxed);
      info.inflight = s->inflight.load(std::memory_order_relaxed);
      info.depth = s->depth.load(std::memory_order_relaxed);
      info.depth_interactive = s->depth_interactive.load(std::memory_order_relaxed);
      info.depth_background = s->depth_background.load(std::memory_order_relaxed);
      info.submitted = s->submitted.load(std::memory_order_relaxed);
      info.completed = s->completed.load(std::memory_order_relaxed);
      info.lost = s->lost.load(std::memory_order_relaxed);
      info.deaths = s->deaths.load(std::memory_order_relaxed);
    }
    slots.push_back(std::move(info));
  }
  return slots;
}

std::string Daemon::handle_control(const control::Request& request) {
  switch (request.op) {
    case control::Op::hello: {
      control::Hello hello;
      hello.pid = std::int32_t(getpid());
      hello.interface = config_.interface;
      hello.backend = backend_;
      hello.mode = ports_.empty() ? std::string() : ports_.front()->info().mode;
      hello.run_dir = config_.run_dir;
      hello.table_version = table_version_;
      hello.slots = slot_infos();
      hello.refused_peers = control_->refused();
      hello.bad_requests = control_->bad_requests();
      hello.applies = applies_;
      hello.rejected_applies = rejected_applies_;
      return control::encode_hello(hello);
    }
    case control::Op::slots: return control::encode_slots(slot_infos());
    case control::Op::grant: return handle_grant(request);
    case control::Op::invalidate_cache: return handle_invalidate_cache(request);
    case control::Op::apply: break;
  }
  // The same structs (model::Tenant, model::Route): copied whole, so no field is left behind.
  const std::vector<TenantConfig>& tenants = request.tables.tenants;
  const std::vector<AgentConfig>& agents = request.tables.agents;
  std::string error;
  if (!install_tables(tenants, agents, error)) {
    ++rejected_applies_;
    AXON_LOG_WARN(kLog, "apply of table version %llu rejected, keeping version %llu: %s",
                  static_cast<unsigned long long>(request.tables.version),
                  static_cast<unsigned long long>(table_version_), error.c_str());
    return control::encode_error("apply rejected, previous tables stay in force: " + error);
  }
  ++applies_;
  table_version_ = request.tables.version;
  AXON_LOG_INFO(kLog, "applied table version %llu from the control socket: %zu agent(s), %zu tenant(s)",
                static_cast<unsigned long long>(table_version_), agents.size(), tenants.size());
  return control::encode_applied(table_version_);
}

// STATUS= for `systemctl status`: backend, live workers and the request rate since last time.
void Daemon::notify_status(std::uint64_t now_ns) {
  std::uint64_t requests = 0;
  for (std::uint32_t i = 0; i < shared_->stats.header->lcore_count; ++i) {
    requests += shared_->stats.lcores[i].requests.load(std::memory_order_relaxed);
  }
  std::size_t alive = 0;
  for (const auto& slot : shared_->workers) {
    alive += slot->state.load(std::memory_order_relaxed) == std::uint32_t(WorkerSlotState::alive) ? 1 : 0;
  }
  double seconds = double(now_ns - status_at_ns_) / 1e9;
  double rate = status_at_ns_ != 0 && seconds > 0 ? double(requests - status_requests_) / seconds : 0.0;
  status_requests_ = requests;
  status_at_ns_ = now_ns;
  char text[256];
  std::snprintf(text, sizeof text, "serving on %s (%s %s), %zu/%zu workers alive, %.0f req/s",
                config_.interface.c_str(), backend_.c_str(), ports_.front()->info().mode.c_str(), alive,
                shared_->workers.size(), rate);
  (void)notifier_.status(text);
}

void Daemon::control_loop() {
  std::vector<pollfd> fds;
  fds.push_back({signal_fd_, POLLIN, 0});
  fds.push_back({deaths_->fd(), POLLIN, 0});
  for (const Listener& l : listeners_) fds.push_back({l.socket.fd(), POLLIN, 0});
  const std::size_t control_at = fds.size();
  fds.push_back({control_->fd(), POLLIN, 0});
  std::vector<std::uint64_t> dead;
  std::uint64_t next_export = 0;
  const auto watchdog_ns = std::uint64_t(systemd::watchdog_interval().count()) * 1000;
  std::uint64_t next_watchdog = 0;
  std::uint64_t next_status = 0;
  for (;;) {
    // At most 50 ms, less when a credit refresh is due sooner ([credits] refresh_us).
    std::uint64_t wait_ns = 50'000'000;
    if (const std::uint64_t due = credits_->next_refresh_ns(), at = monotonic_ns(); due != UINT64_MAX) {
      wait_ns = std::min(wait_ns, due > at ? due - at : 0);
    }
    const timespec timeout{time_t(wait_ns / 1'000'000'000), long(wait_ns % 1'000'000'000)};
    int n = ::ppoll(fds.data(), fds.size(), &timeout, nullptr);
    if (n < 0 && errno != EINTR) {
      AXON_LOG_ERROR(kLog, "poll failed: %s", std::strerror(errno));
      return;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      if (read(signal_fd_, &info, sizeof info) == ssize_t(sizeof info)) {
        if (info.ssi_signo == SIGHUP) {
          (void)notifier_.reloading();
          reload();
          (void)notifier_.ready();
        } else {
          (void)notifier_.stopping();
          AXON_LOG_INFO(kLog, "%s received: draining", strsignal(int(info.ssi_signo)));
          return;
        }
      }
    }
    dead.clear();
    deaths_->poll(dead, 0);
    for (std::uint64_t index : dead) {
      WorkerSlot& slot = *shared_->workers[index];
      // The owner lcore reclaims on its next housekeeping tick and sets the slot vacant.
      slot.state.store(std::uint32_t(WorkerSlotState::dying), std::memory_order_release);
      if (slot.stats != nullptr) {
        slot.stats->state.store(std::uint32_t(WorkerSlotState::dying), std::memory_order_release);
      }
    }
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      if (fds[2 + i].revents & POLLIN) accept_worker(listeners_[i]);
    }
    if (fds[control_at].revents & POLLIN) {
      control_->serve([this](const control::Request& request) { return handle_control(request); });
    }
    const std::uint64_t now = monotonic_ns();
    credits_->tick(now);
    settle_grants(now);
    if (now >= next_export) {
      export_counters();
      next_export = now + 100'000'000;
    }
    if (watchdog_ns != 0 && now >= next_watchdog) {
      (void)notifier_.watchdog();
      next_watchdog = now + watchdog_ns;
    }
    if (now >= next_status) {
      notify_status(now);
      next_status = now + 5'000'000'000;
    }
  }
}

void Daemon::shutdown() {
  // Not ready from the first moment of the shutdown: readers stop routing here at once.
  if (stats_file_) stats_file_->view().header->ready.store(0, std::memory_order_release);
  // New requests stop first (the kernel handles the port again), then in-flight ones drain.
  if (program_) {
    if (auto detached = program_->detach(); !detached) {
      AXON_LOG_ERROR(kLog, "%s", detached.message().c_str());
    }
    shared_->stats.header->xdp_attached.store(0, std::memory_order_relaxed);
  }
  if (shared_) {
    shared_->stop.store(true, std::memory_order_release);
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  if (program_ || dpdk_) export_counters();
  control_.reset();
  listeners_.clear();
  lcores_.clear();
  ports_.clear();
  dpdk_.reset();  // stops and closes the device, rte_eal_cleanup, removes its runtime dir
  program_.reset();
  AXON_LOG_INFO(kLog, "stopped cleanly");
}

int Daemon::run() {
  auto config = load_config(options_.config_path);
  if (!config) {
    AXON_LOG_ERROR(kLog, "%s", config.message().c_str());
    return 1;
  }
  config_ = std::move(config).value();
  if (options_.check_only) {
    auto routes = RouteTable::build(config_);
    if (!routes) {
      AXON_LOG_ERROR(kLog, "%s", routes.message().c_str());
      return 1;
    }
    if (!host_has_what_config_names(config_, options_.config_path)) return 1;
    std::printf("%s: ok (%zu workers, %zu agents, %zu tenants)\n", options_.config_path.c_str(), config_.workers.size(),
                config_.agents.size(), config_.tenants.size());
    return 0;
  }
  // Signals go to the control thread's signalfd only; lcore threads inherit the mask.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC);
  if (signal_fd_ < 0) {
    AXON_LOG_ERROR(kLog, "signalfd failed: %s", std::strerror(errno));
    return 1;
  }
  if (!setup()) {
    shutdown();
    return 1;
  }
  (void)notifier_.ready();  // XDP attached and lcores running: really serving
  control_loop();
  shutdown();
  return 0;
}

}  // namespace

int run_daemon(const DaemonOptions& options) {
  Daemon daemon(options);
  return daemon.run();
}

}  // namespace axon::dataplane
