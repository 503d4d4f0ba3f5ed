// io_uring socket port internals (liburing types): shared by the setup file and the datapath
// file. Nothing here leaks into the public headers; the engine sees only axon::dataplane::Port.
#pragma once

#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "axon/dataplane/port.h"
#include "axon/shm/region.h"

namespace axon::dataplane {

// Every receive buffer starts with what multishot recvmsg writes in front of the payload:
// io_uring_recvmsg_out, then msg_namelen bytes of source address, then msg_controllen bytes of
// control messages, then the datagram. The datagram therefore always starts at the same offset,
// and the name/control area in front of it (read out first) is the headroom the synthetic
// Ethernet/IP/UDP header is written into.
// The name area is rounded up to 32 so that the control messages after it stay 8-byte
// aligned (cmsghdr needs it; buffers themselves start 64-byte aligned).
inline constexpr std::uint32_t kUringNameLen = 32;
static_assert(kUringNameLen >= sizeof(sockaddr_in6), "the name area must hold an IPv6 address");
static_assert((sizeof(io_uring_recvmsg_out) + kUringNameLen) % alignof(cmsghdr) == 0, "cmsghdr alignment");
inline constexpr std::uint32_t kUringControlLen = 64;
inline constexpr std::uint32_t kUringPayloadOffset =
    std::uint32_t(sizeof(io_uring_recvmsg_out)) + kUringNameLen + kUringControlLen;
inline constexpr std::uint32_t kUringSyntheticMax = 14 + 40 + 8;  // Ethernet + IPv6 + UDP
static_assert(kUringPayloadOffset >= kUringSyntheticMax, "the headroom must hold the synthetic header");

// user_data of an SQE/CQE: which operation, and for sends which TX frame.
inline constexpr std::uint64_t kUringRecvTag = 1ull << 62;
inline constexpr std::uint64_t kUringSendTag = 2ull << 62;
inline constexpr std::uint64_t kUringTagMask = 3ull << 62;

struct UringSocket {
  int fd = -1;
  std::uint16_t port = 0;  // host order
  bool armed = false;      // a multishot recvmsg is outstanding
  msghdr recv_template{};  // tells the kernel how much name and control room each buffer has
};

// One in-flight send: the kernel reads msghdr, iovec, address and control until the CQE.
struct UringTxSlot {
  msghdr msg{};
  iovec iov{};
  sockaddr_in6 to{};
  alignas(cmsghdr) std::uint8_t control[64];
};

class UringPort final : public Port {
 public:
  UringPort() = default;
  ~UringPort() override;

  std::uint32_t rx_burst(Frame* frames, std::uint32_t max) noexcept override;
  void rx_release(const Frame* frames, std::uint32_t n) noexcept override;
  std::uint32_t tx_alloc_burst(Frame* frames, std::uint32_t n) noexcept override;
  std::uint32_t tx_burst(const Frame* frames, std::uint32_t n) noexcept override;
  void tx_free(const Frame* frames, std::uint32_t n) noexcept override;
  void poll_completions() noexcept override;
  PortInfo info() const override { return info_; }
  PortCounters counters() const noexcept override { return counters_; }

  std::uint8_t* rx_buffer(std::uint32_t bid) noexcept {
    return reinterpret_cast<std::uint8_t*>(rx_area_.base()) + std::size_t(bid) * buffer_stride_;
  }

  // Set up by open_uring_port (uring_setup.cc).
  io_uring ring_{};
  bool ring_ready_ = false;
  bool started_ = false;   // the ring is enabled and the receives are armed (first datapath call)
  bool disabled_ = false;  // created IORING_SETUP_R_DISABLED: the lcore enables it (single issuer)
  bool defer_taskrun_ = false;
  bool taskrun_flag_ = false;
  bool ipv6_socket_ = true;
  std::vector<UringSocket> sockets_;
  io_uring_buf_ring* buf_ring_ = nullptr;
  std::size_t buf_ring_bytes_ = 0;
  std::uint32_t buffers_ = 0;
  std::uint32_t buffer_size_ = 0;
  std::uint32_t buffer_stride_ = 0;  // buffer_size_ rounded up to 64: every buffer cache-line aligned
  shm::Region rx_area_;
  shm::Region tx_area_;
  std::uint32_t frame_size_ = 0;
  std::vector<UringTxSlot> tx_slots_;
  std::vector<std::uint32_t> tx_pool_;  // free TX frame indices (a stack)
  std::uint32_t pending_sqes_ = 0;      // prepared but not yet submitted
  PortInfo info_;
  PortCounters counters_;

 private:
  void start() noexcept;
  void arm(std::uint32_t socket_index) noexcept;
  void submit() noexcept;
  // Consumes CQEs in order: sends go back to the pool, receives become frames (at most max;
  // stops at the first receive once frames is full).
  std::uint32_t reap(Frame* frames, std::uint32_t max) noexcept;
  bool to_frame(const io_uring_cqe& cqe, Frame& frame) noexcept;
  void recycle(std::uint32_t bid, int offset) noexcept;
  bool prepare_send(const Frame& frame, io_uring_sqe* sqe) noexcept;
};

}  // namespace axon::dataplane
