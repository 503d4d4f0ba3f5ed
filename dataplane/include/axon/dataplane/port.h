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

#include "axon/common/result.h"

namespace axon::dataplane {

struct Frame {
  std::uint8_t* data = nullptr;
  std::uint32_t len = 0;     // bytes of packet (rx), or capacity until set by the engine (tx)
  std::uint64_t handle = 0;  // backend's identity of the buffer
};

struct PortCounters {
  std::uint64_t rx_frames = 0;
  std::uint64_t tx_frames = 0;
  std::uint64_t tx_ring_full = 0;   // frames tx_burst could not queue
  std::uint64_t tx_pool_empty = 0;  // tx_alloc_burst came back short
  std::uint64_t wakeups = 0;        // system calls made to kick the kernel
};

struct PortInfo {
  std::string backend;  // "af_xdp"
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
  zero_copy_required
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

}  // namespace axon::dataplane
