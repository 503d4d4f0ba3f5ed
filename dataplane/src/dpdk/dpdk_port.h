// The DPDK backend's private types: one DpdkPort per (ethdev port, queue) pair, and the
// runtime that owns the EAL, the mempools and the device. Only dpdk_*.cc include this.
#pragma once

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstdint>
#include <string>
#include <vector>

#include "axon/dataplane/port.h"

namespace axon::dataplane {

// Our lcore threads are std::threads, not EAL lcores: the first burst a thread drives
// registers it (rte_thread_register) so it has an lcore id and so a mempool cache. A thread
// that cannot get one (all RTE_MAX_LCORE ids taken) still works, on the pools' shared rings.
void dpdk_register_thread_slow() noexcept;
inline void dpdk_register_thread() noexcept {
  if (rte_lcore_id() == LCORE_ID_ANY) [[unlikely]] {
    dpdk_register_thread_slow();
  }
}

class DpdkPort final : public Port {
 public:
  static constexpr std::uint32_t kMaxBurst = 64;

  DpdkPort(std::uint16_t port_id, std::uint16_t queue, rte_mempool* tx_pool, PortInfo info, bool tx_cleanup)
      : port_id_(port_id), queue_(queue), tx_pool_(tx_pool), info_(std::move(info)), tx_cleanup_(tx_cleanup) {}

  [[nodiscard]] std::uint32_t rx_burst(Frame* frames, std::uint32_t max) noexcept override;
  void rx_release(const Frame* frames, std::uint32_t n) noexcept override;
  [[nodiscard]] std::uint32_t tx_alloc_burst(Frame* frames, std::uint32_t n) noexcept override;
  [[nodiscard]] std::uint32_t tx_burst(const Frame* frames, std::uint32_t n) noexcept override;
  void tx_free(const Frame* frames, std::uint32_t n) noexcept override;
  void poll_completions() noexcept override;

  [[nodiscard]] PortInfo info() const override { return info_; }
  [[nodiscard]] PortCounters counters() const noexcept override { return counters_; }

 private:
  void free_frames(const Frame* frames, std::uint32_t n) noexcept;

  std::uint16_t port_id_;
  std::uint16_t queue_;
  rte_mempool* tx_pool_;
  PortInfo info_;
  bool tx_cleanup_;  // the driver implements rte_eth_tx_done_cleanup
  PortCounters counters_{};
  rte_mbuf* scratch_[kMaxBurst];
};

}  // namespace axon::dataplane
