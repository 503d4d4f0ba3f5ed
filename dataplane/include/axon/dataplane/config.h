// The data plane's configuration: one TOML file (deploy/axon-dataplane.toml is the
// annotated example). Loading checks every value and cross-reference up front and names
// the file, line and fix for the first problem, so a bad file never starts a half-working
// daemon.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "axon/common/model.h"
#include "axon/common/result.h"
#include "axon/shm/segment.h"

namespace axon::dataplane {

enum class ConfigError { io_error, parse_error, invalid_value, missing_field, unknown_key, unknown_reference };

template <typename T>
using ConfigResult = Result<T, ConfigError>;

enum class ZeroCopy { automatic, required, disabled };

struct XdpSettings {
  ZeroCopy zero_copy = ZeroCopy::automatic;
  std::uint32_t frame_size = 4096;  // UMEM frame; 2048 or 4096
  std::uint32_t frames = 4096;      // UMEM frames per queue: half fill the RX side, half TX
  bool busy_poll = true;            // SO_PREFER_BUSY_POLL where the kernel takes it
  bool enforce_allowlist = false;
  bool enforce_rate = false;
  // Tenants' credits (credits_max > 0) are enforced (in XDP, or by the userspace backends);
  // tenants without credits are unlimited either way. false: credits are not enforced at all.
  bool enforce_credits = true;
  // The XDP hook stamps every frame it hands to AF_XDP, and that stamp is the request's first hop
  // (docs/observability.md, "Hops and stages"); false: the first hop is the lcore's first sight.
  bool rx_stamp = true;
};

// [credits]: how the data plane refreshes the tenants' credits (docs/scheduling.md, "Credits
// and BUSY from XDP"). Every refresh_us, each tenant with credits_max > 0 gets a new budget of
// requests for the next interval: + increase_permille of credits_max while its workers'
// queueing delay is at or under the target, x max(0.5, 1 - decrease_permille/1000 * (delay -
// target) / delay) above it, kept within [credits_min, credits_max].
struct CreditSettings {
  std::uint32_t refresh_us = 10000;       // 100 us .. 10 s
  std::uint32_t target_delay_us = 1000;   // tenants' default credit_delay_target_us
  std::uint32_t increase_permille = 50;   // additive increase, per mille of credits_max per refresh
  std::uint32_t decrease_permille = 500;  // multiplicative decrease strength (Breakwater's beta)
};

// [dpdk]: used when backend = "dpdk". The lcore threads are [dataplane] cores (one per
// queue); DPDK queue i is served by the thread on cores[i].
struct DpdkSettings {
  std::vector<std::string> allow;    // PCI devices (bound to vfio-pci) to use; empty: none
  std::vector<std::string> vdevs;    // virtual devices, e.g. "net_af_xdp0,iface=veth0"
  std::string socket_mem;            // hugepage MiB to reserve per NUMA node ("256,256"); "": on demand
  bool in_memory = true;             // no hugetlbfs files and no shared runtime config
  std::string file_prefix = "axon";  // EAL runtime dir /var/run/dpdk/<file_prefix>
  std::uint32_t mbufs = 8191;        // mbufs per NUMA node
  std::uint32_t mbuf_cache = 256;    // per-lcore cache (<= 512)
  std::uint32_t rx_descriptors = 1024;
  std::uint32_t tx_descriptors = 1024;
  bool telemetry = true;              // the dpdk_telemetry.v2 socket in the runtime dir
  std::vector<std::string> eal_args;  // extra EAL arguments, appended verbatim
};

// [uring]: used when backend = "uring" (or "auto" falls back to it). Plain UDP sockets driven
// through io_uring; needs no privilege beyond binding the ports.
struct UringSettings {
  std::string bind_address;               // "" = every address (dual-stack); else one IPv4/IPv6 address
  bool bind_to_device = true;             // SO_BINDTODEVICE to [dataplane] interface
  std::uint32_t buffers = 4096;           // receive buffers per queue (power of two, <= 32768)
  std::uint32_t buffer_size = 2048;       // bytes per receive buffer, headroom included
  std::uint32_t tx_frames = 1024;         // reply frames per queue
  std::uint32_t frame_size = 2048;        // bytes per reply frame
  std::uint32_t ring_entries = 1024;      // io_uring submission queue entries (power of two)
  std::uint32_t socket_buffer = 4194304;  // SO_RCVBUF/SO_SNDBUF request, bytes
};

// [telemetry]: per-stage latency histograms (docs/observability.md). Off: the lcores take
// no extra clock reads and record nothing (the stamps the deadlines need stay).
struct TelemetrySettings {
  bool stage_latency = true;
  // Head sampling (docs/observability.md, "Traces"): the share of requests traced besides the
  // ones whose client set the sampled flag, 0 to 1. 0: only client-sampled requests are traced.
  double trace_sample_rate = 0.0;
};

// [reassembly]: segmented requests (docs/protocol.md §6). Each lcore has its own table and arena,
// preallocated at start: `messages` partial messages at most, in `memory_per_lcore` bytes, of which
// one tenant may hold `memory_per_tenant`. A message is charged its message_len rounded up to the
// arena's 4 KiB blocks from its first segment on; one not complete `timeout_ms` after its first
// segment arrived is dropped (reassembly_timeout) and its memory returned.
struct ReassemblySettings {
  std::uint32_t timeout_ms = 500;
  std::uint32_t memory_per_lcore = 8u << 20;
  std::uint32_t memory_per_tenant = 2u << 20;
  std::uint32_t messages = 1024;
};

// [dedup]: retransmit dedup and the reply cache (docs/scheduling.md, "Retransmit dedup"). Each
// lcore has one table of `entries` requests (in flight, answered, or tombstones of answers whose
// payload was given up) and an `arena_bytes` ring of cached reply payloads on hugepages, both
// mapped at start; the agents' dedup_window_ms, reply_cache_entries and reply_cache_eviction say
// what goes in. Mapped even while no agent turns dedup on, so agents applied later over the
// control socket find it ready.
struct DedupSettings {
  std::uint32_t entries = 8192;
  std::uint32_t arena_bytes = 4u << 20;
};

// [response_cache]: bytes of each lcore's response cache (docs/operations.md, "Response
// cache"), preallocated at start on hugepages when there are any; 0 = no cache (agents marked
// cacheable are then always served by a worker).
struct ResponseCacheSettings {
  std::uint32_t bytes = 4u << 20;
};

// A tenant and an agent's route are the shared model's (axon/common/model.h).
using TenantConfig = model::Tenant;

struct WorkerConfig {
  std::string name;  // also the handoff socket name: <run_dir>/workers/<name>.sock
};

using AgentConfig = model::Route;  // workers: slot names; empty = answered ERROR worker_failed

struct DataplaneConfig {
  std::string source_path;
  std::string interface;
  std::string backend = "auto";  // "auto", "xdp", "uring" or "dpdk"
  std::vector<std::uint32_t> queues{0};
  std::vector<int> cores{1};
  int numa_node = -1;  // -1: take the NIC's node from sysfs
  std::vector<std::uint16_t> ports{7400};
  std::string run_dir = "/run/axon";
  std::uint32_t drain_timeout_ms = 2000;
  std::uint32_t busy_retry_after_us = 200;
  std::uint32_t housekeeping_us = 200;  // how often lcores sweep deadlines and deaths
  // A worker with requests waiting in its ring that takes none of them (and completes none)
  // for this long is stalled: routed around, its requests answered worker_failed. 0: never.
  std::uint32_t worker_stall_timeout_ms = 2000;

  std::uint32_t worker_slots = 0;           // generic slots "slot-0".."slot-<N-1>", after [[workers]]
  std::vector<std::uint32_t> control_uids;  // beyond root and our euid, may use control.sock
  XdpSettings xdp;
  CreditSettings credits;
  UringSettings uring;
  DpdkSettings dpdk;
  ReassemblySettings reassembly;
  DedupSettings dedup;
  ResponseCacheSettings response_cache;
  TelemetrySettings telemetry;
  shm::SegmentGeometry geometry;
  std::vector<TenantConfig> tenants;
  std::vector<WorkerConfig> workers;
  std::vector<AgentConfig> agents;
};

ConfigResult<DataplaneConfig> load_config(const std::string& path);
// The name of generic worker slot i ("slot-<i>").
std::string generic_slot_name(std::uint32_t index);
// Checks tenant and agent tables against the worker slots by the same rules as the TOML
// [[tenants]]/[[agents]] sections (used for tables that arrive over the control socket);
// the message names the offending item.
ConfigResult<Ok> check_tables(const std::vector<TenantConfig>& tenants, const std::vector<AgentConfig>& agents,
                              const std::vector<WorkerConfig>& workers);
ConfigResult<DataplaneConfig> parse_config(const std::string& text, const std::string& source_name);

}  // namespace axon::dataplane
