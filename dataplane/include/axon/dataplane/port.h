// A network port as the engine sees it: bursts of frames in, bursts of frames out.
//
// The engine never sees a backend's types: a factory returns this interface, and every
// virtual call moves a whole burst, so dispatch costs one indirect call per burst, never
// per packet. Frames stay owned by the port; the engine borrows them between rx_burst and
// rx_release, and between tx_alloc_burst and tx_burst/tx_free.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "axon/common/result.h"

namespace axon::dataplane {

struct Frame {
  std::uint8_t* data = nullptr;
  std::uint32_t len = 0;     // bytes of packet (rx), or capacity until set by the engine (tx)
  std::uint64_t handle = 0;  // backend's identity of the buffer
  // rx: when the frame was received before the backend handed it over (CLOCK_MONOTONIC ns; the
  // AF_XDP backend's XDP hook stamp, [xdp] rx_stamp), 0 when the backend has none.
  std::uint64_t rx_ns = 0;
};

struct PortCounters {
  std::uint64_t rx_frames = 0;
  std::uint64_t tx_frames = 0;
  std::uint64_t tx_ring_full = 0;   // frames tx_burst could not queue
  std::uint64_t tx_pool_empty = 0;  // tx_alloc_burst came back short
  std::uint64_t wakeups = 0;        // system calls made to kick the kernel
  std::uint64_t rx_dropped = 0;     // datagrams the backend lost before the engine saw them
  std::uint64_t tx_errors = 0;      // frames the kernel refused after tx_burst took them
};

// Losses below a port that the layer underneath counts (a DPDK device, or the kernel's side
// of AF_XDP sockets), as published in StatsHeader::device_*.
struct DeviceCounters {
  std::uint64_t rx_missed = 0;  // no room in the RX ring
  std::uint64_t rx_nombuf = 0;  // no free receive buffer
  std::uint64_t rx_errors = 0;  // other receive drops
  std::uint64_t tx_errors = 0;
};

struct PortInfo {
  std::string backend;  // "af_xdp", "uring"
  std::string mode;     // e.g. "zero-copy" or "copy"
  std::string interface;
  std::uint32_t queue = 0;
  std::uint32_t frame_capacity = 0;  // largest frame the port can send
};

class Port {
 public:
  virtual ~Port() = default;

  [[nodiscard]] virtual std::uint32_t rx_burst(Frame* frames, std::uint32_t max) noexcept = 0;
  virtual void rx_release(const Frame* frames, std::uint32_t n) noexcept = 0;
  // Up to n empty frames to build packets in; `len` holds each frame's capacity.
  [[nodiscard]] virtual std::uint32_t tx_alloc_burst(Frame* frames, std::uint32_t n) noexcept = 0;
  // Queues frames for transmission. Returns how many were taken; the caller frees the rest.
  [[nodiscard]] virtual std::uint32_t tx_burst(const Frame* frames, std::uint32_t n) noexcept = 0;
  virtual void tx_free(const Frame* frames, std::uint32_t n) noexcept = 0;
  // Reclaims sent frames and kicks the kernel if it asked for a wakeup.
  virtual void poll_completions() noexcept = 0;

  [[nodiscard]] virtual PortInfo info() const = 0;
  [[nodiscard]] virtual PortCounters counters() const noexcept = 0;
};

enum class PortError {
  invalid_argument,
  interface_not_found,
  no_memory,
  umem_failed,
  socket_failed,
  zero_copy_required,
  ring_failed
};

struct AfXdpOptions {
  std::string interface;
  std::uint32_t queue = 0;
  std::uint32_t frame_size = 4096;
  std::uint32_t frames = 4096;
  int numa_node = -1;
  enum class ZeroCopy { automatic, required, disabled } zero_copy = ZeroCopy::automatic;
  bool busy_poll = true;
};

// Creates the UMEM (on hugepages when available) and the AF_XDP socket for one queue. The
// caller puts socket_fd() into the XDP program's socket map; see AfXdpPort::socket_fd.
Result<std::unique_ptr<Port>, PortError> open_af_xdp_port(const AfXdpOptions& options);

// The AF_XDP socket fd of a port made by open_af_xdp_port (for the XSKMAP), else -1.
int af_xdp_socket_fd(const Port& port) noexcept;

struct UringOptions {
  std::string interface;                   // SO_BINDTODEVICE target; empty = any interface
  std::string bind_address;                // empty = any (dual-stack IPv6 socket, IPv4 mapped)
  std::vector<std::uint16_t> ports{7400};  // one socket per port, SO_REUSEPORT across queues
  std::uint32_t queue = 0;                 // the lcore this port serves (for names and logs)
  std::uint32_t buffers = 4096;            // receive buffers in the provided-buffer ring
  std::uint32_t buffer_size = 2048;        // bytes per receive buffer (headroom included)
  std::uint32_t tx_frames = 1024;          // private TX frame pool
  std::uint32_t frame_size = 2048;         // bytes per TX frame
  std::uint32_t ring_entries = 1024;       // submission queue entries
  std::uint32_t socket_buffer = 4 << 20;   // SO_RCVBUF/SO_SNDBUF bytes (best effort)
  int numa_node = -1;
};

// Opens the UDP sockets (one per port) and the io_uring with its provided-buffer ring for one
// lcore. Needs no privilege beyond binding the ports. Received datagrams reach the engine as
// Ethernet/IP/UDP frames with a synthetic header written into the buffer's headroom.
Result<std::unique_ptr<Port>, PortError> open_uring_port(const UringOptions& options);

}  // namespace axon::dataplane

namespace axon::dataplane {

// ---- DPDK -------------------------------------------------------------------------------
// DPDK owns the device: no XDP program of axon's is involved. One DpdkRuntime per process
// (DPDK's EAL can be initialised only once per process); it owns the EAL, the mempools and
// the one ethdev port, and hands out one Port per queue. Destroying it stops and closes the
// device, calls rte_eal_cleanup and removes the EAL runtime directory it created.

struct DpdkOptions {
  std::uint32_t queues = 1;          // RX/TX queue pairs, one per lcore; RSS spreads flows over them
  std::vector<int> cores;            // the lcore threads' cores, by queue (NUMA placement of pools)
  std::vector<std::string> allow;    // PCI allowlist (-a); empty probes no PCI device
  std::vector<std::string> vdevs;    // --vdev values, e.g. "net_af_xdp0,iface=veth0"
  std::string socket_mem;            // --socket-mem, e.g. "256" or "256,256"; empty: on demand
  bool in_memory = true;             // --in-memory: no hugetlbfs files, no shared config
  std::string file_prefix = "axon";  // runtime dir /var/run/dpdk/<prefix> (telemetry socket)
  std::uint32_t mbufs = 8191;        // mbufs per NUMA node's pool
  std::uint32_t mbuf_cache = 256;    // per-lcore mempool cache
  std::uint16_t rx_descriptors = 1024;
  std::uint16_t tx_descriptors = 1024;
  bool telemetry = true;
  std::vector<std::string> extra_args;  // appended to the EAL arguments verbatim
};

class DpdkRuntime {
 public:
  virtual ~DpdkRuntime() = default;
  [[nodiscard]] virtual std::uint32_t queue_count() const noexcept = 0;
  // Hands over the port of one queue (once; nullptr afterwards). Destroy every port, and
  // stop using it, before the runtime. A port is driven by one thread at a time; the first
  // burst a thread drives registers that thread with the EAL (rte_thread_register) so it
  // gets an lcore id and its own mempool cache.
  [[nodiscard]] virtual std::unique_ptr<Port> take_port(std::uint32_t queue) noexcept = 0;
  // Ethdev name and driver, e.g. "net_af_xdp0 (net_af_xdp)".
  [[nodiscard]] virtual std::string describe() const = 0;
  // Mbufs currently in the pools (all nodes): equal to the start value when nothing leaks.
  [[nodiscard]] virtual std::uint64_t mbufs_available() const noexcept = 0;
  // Where the EAL runtime directory (and the telemetry socket, if enabled) lives.
  [[nodiscard]] virtual std::string runtime_dir() const = 0;
  // The device's own drop and error counters (rte_eth_stats_get); all 0 if it cannot say.
  [[nodiscard]] virtual DeviceCounters device_counters() const noexcept = 0;
};

// The EAL argument vector open_dpdk uses (argv[0] included); exposed for tests and --check.
std::vector<std::string> dpdk_eal_arguments(const DpdkOptions& options);

// Initialises the EAL, creates the pools and configures and starts the single ethdev port
// the options name (one allowlisted device or one vdev). Every failure cleans up what it
// made and says what to change.
Result<std::unique_ptr<DpdkRuntime>, PortError> open_dpdk(const DpdkOptions& options);

}  // namespace axon::dataplane
