// The load generator's AF_XDP transport (--xdp-dev): it sends and receives whole Ethernet/IPv4/
// UDP frames through an AF_XDP socket on its own veth end, with its own XDP program steering the
// replies addressed to its source port into that socket. Per request this costs a frame copy into
// UMEM and one sendto per 32 frames, instead of a trip through the kernel's UDP socket layer in
// each direction: the load side stays cheaper per request than the appliance it drives.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "axon/common/result.h"

namespace axon::loadgen {

struct XskOptions {
  std::string dev;              // the interface (the load generator's own veth end)
  unsigned queue = 0;           // its receive/transmit queue
  std::string dst_mac;          // the target's MAC; empty = from the neighbour table
  std::uint32_t frames = 8192;  // UMEM frames of 2048 bytes, half for receive, half for send
  // TX ring slots: what may queue here before the kernel takes it. Small, so that a peer that
  // pushes back (veth stops its queue when the other end's ring is full) costs requests at the
  // sender, as on a real link, instead of milliseconds of queueing inside the load generator.
  std::uint32_t tx_ring = 512;
};

// Counters of the socket (XDP_STATISTICS) and of this side's own shortfalls.
struct XskStats {
  std::uint64_t rx_dropped = 0;          // kernel: frames dropped (e.g. larger than a UMEM frame)
  std::uint64_t rx_ring_full = 0;        // kernel: our RX ring was full
  std::uint64_t rx_fill_ring_empty = 0;  // kernel: no free frame to copy a reply into
  std::uint64_t tx_invalid = 0;          // kernel: descriptors it refused
  std::uint64_t tx_no_frame = 0;         // us: a send found no free UMEM frame / TX slot
  std::uint64_t rx_not_ours = 0;         // us: frames that were not IPv4/UDP to our port
  std::uint64_t kicks = 0;               // sendto calls
  std::uint64_t kicks_busy = 0;          // sendto calls the kernel refused for now (EAGAIN/EBUSY/
                                         // ENOBUFS: the peer's receive queue was full)
};

enum class XskError { invalid, unsupported, setup_failed };

class XskIo {
 public:
  ~XskIo();
  XskIo(const XskIo&) = delete;
  XskIo& operator=(const XskIo&) = delete;

  // Attaches the load generator's XDP program to options.dev (native mode; fails if another
  // XDP program is attached there) and opens the socket. dst_ip/dst_port (network order) is
  // the target; src_port (host order) is the UDP source port replies come back to.
  [[nodiscard]] static Result<std::unique_ptr<XskIo>, XskError> open(const XskOptions& options, std::uint32_t dst_ip,
                                                                     std::uint16_t dst_port, std::uint16_t src_port);

  // Queues up to n datagrams (UDP payloads) as frames and kicks the kernel. Returns how many
  // were queued; fewer means no free UMEM frame or TX slot right now (retry after reap()).
  [[nodiscard]] unsigned send(const iovec* datagrams, unsigned n) noexcept;
  // Takes back completed TX frames; kicks the kernel again if frames are still queued.
  void reap() noexcept;
  // Hands up to max received UDP payloads to on_datagram(std::span<const std::uint8_t>), then
  // returns their frames to the fill ring. Returns how many frames were taken.
  template <typename F>
  unsigned receive(unsigned max, F&& on_datagram) noexcept {
    std::span<const std::uint8_t> payloads[kMaxBatch];
    unsigned n = receive_begin(max, payloads);
    for (unsigned i = 0; i < n; ++i)
      if (!payloads[i].empty()) on_datagram(payloads[i]);
    receive_end(n);
    return n;
  }

  [[nodiscard]] int fd() const noexcept;
  [[nodiscard]] XskStats stats() const noexcept;
  [[nodiscard]] std::string describe() const;

  static constexpr unsigned kMaxBatch = 64;

 private:
  struct Impl;
  explicit XskIo(std::unique_ptr<Impl> impl) noexcept;
  unsigned receive_begin(unsigned max, std::span<const std::uint8_t>* payloads) noexcept;
  void receive_end(unsigned n) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace axon::loadgen
