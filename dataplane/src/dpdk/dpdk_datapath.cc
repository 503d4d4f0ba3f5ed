// DPDK hot path: burst receive and transmit on one queue of the ethdev port. A Frame's
// handle is its rte_mbuf; frames go back to the mempool in bulk. No allocation, no locks,
// one driver call per burst.
#include <cstdint>

#include "dpdk/dpdk_port.h"

namespace axon::dataplane {
namespace {

rte_mbuf* mbuf_of(const Frame& frame) noexcept {
  return reinterpret_cast<rte_mbuf*>(frame.handle);
}

std::uint64_t handle_of(rte_mbuf* mbuf) noexcept {
  return reinterpret_cast<std::uintptr_t>(mbuf);
}

}  // namespace

std::uint32_t DpdkPort::rx_burst(Frame* frames, std::uint32_t max) noexcept {
  dpdk_register_thread();
  if (max > kMaxBurst) max = kMaxBurst;
  const std::uint16_t n = rte_eth_rx_burst(port_id_, queue_, scratch_, std::uint16_t(max));
  for (std::uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = scratch_[i];
    // Scatter is off, so a frame is one segment; its first segment is the whole datagram
    // for every MTU the pool's data room holds.
    frames[i].data = rte_pktmbuf_mtod(m, std::uint8_t*);
    frames[i].len = m->data_len;
    frames[i].handle = handle_of(m);
  }
  counters_.rx_frames += n;
  return n;
}

void DpdkPort::free_frames(const Frame* frames, std::uint32_t n) noexcept {
  while (n > 0) {
    const std::uint32_t chunk = n < kMaxBurst ? n : kMaxBurst;
    for (std::uint32_t i = 0; i < chunk; ++i) scratch_[i] = mbuf_of(frames[i]);
    rte_pktmbuf_free_bulk(scratch_, chunk);
    frames += chunk;
    n -= chunk;
  }
}

void DpdkPort::rx_release(const Frame* frames, std::uint32_t n) noexcept {
  dpdk_register_thread();
  free_frames(frames, n);
}

std::uint32_t DpdkPort::tx_alloc_burst(Frame* frames, std::uint32_t n) noexcept {
  dpdk_register_thread();
  if (n > kMaxBurst) n = kMaxBurst;
  std::uint32_t got = n;
  if (rte_pktmbuf_alloc_bulk(tx_pool_, scratch_, n) != 0) {
    // The bulk call is all or nothing; a nearly empty pool still hands out what it has.
    got = 0;
    while (got < n) {
      rte_mbuf* m = rte_pktmbuf_alloc(tx_pool_);
      if (m == nullptr) break;
      scratch_[got++] = m;
    }
    counters_.tx_pool_empty += n - got;
  }
  for (std::uint32_t i = 0; i < got; ++i) {
    rte_mbuf* m = scratch_[i];
    frames[i].data = rte_pktmbuf_mtod(m, std::uint8_t*);
    frames[i].len = rte_pktmbuf_tailroom(m);
    frames[i].handle = handle_of(m);
  }
  return got;
}

std::uint32_t DpdkPort::tx_burst(const Frame* frames, std::uint32_t n) noexcept {
  dpdk_register_thread();
  const std::uint32_t wanted = n;
  std::uint32_t sent_total = 0;
  while (n > 0) {
    const std::uint32_t chunk = n < kMaxBurst ? n : kMaxBurst;
    for (std::uint32_t i = 0; i < chunk; ++i) {
      rte_mbuf* m = mbuf_of(frames[i]);
      m->data_len = std::uint16_t(frames[i].len);
      m->pkt_len = frames[i].len;
      // Checksums are complete in software (reply_builder): no offload flags.
      m->ol_flags = 0;
    }
    for (std::uint32_t i = 0; i < chunk; ++i) scratch_[i] = mbuf_of(frames[i]);
    const std::uint16_t sent = rte_eth_tx_burst(port_id_, queue_, scratch_, std::uint16_t(chunk));
    sent_total += sent;
    if (sent < chunk) break;  // the caller frees frames[sent_total..]
    frames += chunk;
    n -= chunk;
  }
  counters_.tx_frames += sent_total;
  counters_.tx_ring_full += wanted - sent_total;
  return sent_total;
}

void DpdkPort::tx_free(const Frame* frames, std::uint32_t n) noexcept {
  dpdk_register_thread();
  free_frames(frames, n);
}

void DpdkPort::poll_completions() noexcept {
  dpdk_register_thread();
  // Most drivers reclaim sent mbufs inside tx_burst; an idle queue would otherwise keep
  // them until the next send. Drivers without the call are skipped (decided at setup).
  if (tx_cleanup_) (void)rte_eth_tx_done_cleanup(port_id_, queue_, 0);
}

}  // namespace axon::dataplane
