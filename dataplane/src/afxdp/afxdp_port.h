// AF_XDP port internals (libxdp types): shared by the setup file and the datapath file.
#pragma once

#include <xdp/xsk.h>

#include <cstdint>
#include <vector>

#include "axon/dataplane/port.h"
#include "axon/shm/region.h"

namespace axon::dataplane {

class AfXdpPort final : public Port {
 public:
  AfXdpPort() = default;
  ~AfXdpPort() override;

  std::uint32_t rx_burst(Frame* frames, std::uint32_t max) noexcept override;
  void rx_release(const Frame* frames, std::uint32_t n) noexcept override;
  std::uint32_t tx_alloc_burst(Frame* frames, std::uint32_t n) noexcept override;
  std::uint32_t tx_burst(const Frame* frames, std::uint32_t n) noexcept override;
  void tx_free(const Frame* frames, std::uint32_t n) noexcept override;
  void poll_completions() noexcept override;
  PortInfo info() const override { return info_; }
  PortCounters counters() const noexcept override { return counters_; }

  int fd() const noexcept { return xsk_ == nullptr ? -1 : xsk_socket__fd(xsk_); }

  // Set up by open_af_xdp_port (afxdp_setup.cc).
  shm::Region umem_area_;
  xsk_umem* umem_ = nullptr;
  xsk_socket* xsk_ = nullptr;
  xsk_ring_prod fill_{};
  xsk_ring_cons comp_{};
  xsk_ring_cons rx_{};
  xsk_ring_prod tx_{};
  std::uint32_t frame_size_ = 0;
  std::vector<std::uint64_t> tx_pool_;  // free TX frame addresses (a stack)
  PortInfo info_;
  PortCounters counters_;

 private:
  void kick_tx() noexcept;
};

}  // namespace axon::dataplane
