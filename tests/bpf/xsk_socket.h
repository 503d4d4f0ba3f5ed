// A minimal AF_XDP socket for tests that attach the XDP program to a veth pair
// (test_xdp_attach.cc, test_xdp_busy_veth.cc): one UMEM, fill ring primed, receive only.
#pragma once

#include <poll.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

// libxdp's ring helpers are inline C; their casts are not ours to change.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
#include <xdp/xsk.h>
#pragma GCC diagnostic pop

namespace axon::test {

// A minimal AF_XDP socket on the interface's queue 0, copy mode (veth has no zero-copy).
class XskSocket {
 public:
  static constexpr std::uint32_t kFrames = 64;
  static constexpr std::uint32_t kFrameSize = XSK_UMEM__DEFAULT_FRAME_SIZE;

  explicit XskSocket(const std::string& dev) {
    area_ = mmap(nullptr, kFrames * kFrameSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area_ == MAP_FAILED) {
      area_ = nullptr;
      return;
    }
    // libxdp leaves the rings' cached indices unset: start from zeroed structs.
    std::memset(&fill_, 0, sizeof fill_);
    std::memset(&comp_, 0, sizeof comp_);
    std::memset(&rx_, 0, sizeof rx_);
    std::memset(&tx_, 0, sizeof tx_);
    xsk_umem_config umem_config{};
    umem_config.fill_size = kFrames;
    umem_config.comp_size = kFrames;
    umem_config.frame_size = kFrameSize;
    if (int err = xsk_umem__create(&umem_, area_, kFrames * kFrameSize, &fill_, &comp_, &umem_config); err != 0) {
      error_ = "xsk_umem__create: " + std::string(std::strerror(-err));
      return;
    }
    xsk_socket_config config{};
    config.rx_size = kFrames;
    config.tx_size = kFrames;
    config.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;  // our program, not libxdp's default
    config.bind_flags = XDP_COPY;
    if (int err = xsk_socket__create(&xsk_, dev.c_str(), 0, umem_, &rx_, &tx_, &config); err != 0) {
      error_ = "xsk_socket__create: " + std::string(std::strerror(-err));
      return;
    }
    std::uint32_t idx = 0;
    if (xsk_ring_prod__reserve(&fill_, kFrames, &idx) != kFrames) {
      error_ = "cannot fill the fill ring";
      return;
    }
    for (std::uint32_t i = 0; i < kFrames; ++i) *xsk_ring_prod__fill_addr(&fill_, idx + i) = i * kFrameSize;
    xsk_ring_prod__submit(&fill_, kFrames);
  }

  ~XskSocket() {
    if (xsk_) xsk_socket__delete(xsk_);
    if (umem_) (void)xsk_umem__delete(umem_);
    if (area_) munmap(area_, kFrames * kFrameSize);
  }
  XskSocket(const XskSocket&) = delete;
  XskSocket& operator=(const XskSocket&) = delete;

  [[nodiscard]] bool ok() const noexcept { return xsk_ != nullptr && error_.empty(); }
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] int fd() const noexcept { return xsk_socket__fd(xsk_); }

  // Waits up to timeout_ms for one frame and returns its bytes.
  std::optional<std::vector<std::uint8_t>> receive(int timeout_ms) {
    pollfd p{fd(), POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
    std::uint32_t idx = 0;
    if (xsk_ring_cons__peek(&rx_, 1, &idx) != 1) return std::nullopt;
    const xdp_desc* desc = xsk_ring_cons__rx_desc(&rx_, idx);
    const auto* data = static_cast<const std::uint8_t*>(xsk_umem__get_data(area_, desc->addr));
    std::vector<std::uint8_t> frame(data, data + desc->len);
    xsk_ring_cons__release(&rx_, 1);
    return frame;
  }

 private:
  void* area_ = nullptr;
  xsk_umem* umem_ = nullptr;
  xsk_socket* xsk_ = nullptr;
  xsk_ring_prod fill_;
  xsk_ring_cons comp_;
  xsk_ring_cons rx_;
  xsk_ring_prod tx_;
  std::string error_;
};

}  // namespace axon::test
