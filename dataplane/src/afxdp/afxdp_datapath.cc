// AF_XDP hot path: burst receive, batched fill-ring refill, burst transmit and
// completion reaping. No allocation, no locks; system calls only when the kernel set
// the need-wakeup flag.
#include <sys/socket.h>

#include <cstring>

#include "afxdp/afxdp_port.h"
#include "axon_xdp.shared.h"

namespace axon::dataplane {
namespace {

// The XDP hook's receive stamp in the metadata in front of the frame (struct axon_rx_meta), or 0.
// The magic is cleared once read: the frame's headroom keeps it otherwise, and a later frame in
// the same buffer that came without a stamp would be read as stamped.
std::uint64_t take_rx_stamp(std::uint8_t* data) noexcept {
  std::uint8_t* at = data - sizeof(axon_rx_meta);
  axon_rx_meta meta;
  std::memcpy(&meta, at, sizeof meta);
  if (meta.magic != AXON_RX_META_MAGIC) return 0;
  const std::uint32_t cleared = 0;
  std::memcpy(at + offsetof(axon_rx_meta, magic), &cleared, sizeof cleared);
  return meta.rx_ns;
}

}  // namespace

std::uint32_t AfXdpPort::rx_burst(Frame* frames, std::uint32_t max) noexcept {
  std::uint32_t idx = 0;
  std::uint32_t n = xsk_ring_cons__peek(&rx_, max, &idx);
  if (n == 0) {
    // In copy mode (and with need-wakeup) the kernel only fills the RX ring after we
    // poke it; with busy polling this recvfrom runs the driver's NAPI on this core.
    if (xsk_ring_prod__needs_wakeup(&fill_)) {
      ++counters_.wakeups;
      recvfrom(xsk_socket__fd(xsk_), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
    }
    return 0;
  }
  auto* base = umem_area_.base();
  for (std::uint32_t i = 0; i < n; ++i) {
    const xdp_desc* desc = xsk_ring_cons__rx_desc(&rx_, idx + i);
    frames[i].data = static_cast<std::uint8_t*>(xsk_umem__get_data(base, desc->addr));
    frames[i].len = desc->len;
    frames[i].handle = desc->addr;
    frames[i].rx_ns = take_rx_stamp(frames[i].data);
  }
  xsk_ring_cons__release(&rx_, n);
  counters_.rx_frames += n;
  return n;
}

void AfXdpPort::rx_release(const Frame* frames, std::uint32_t n) noexcept {
  if (n == 0) return;
  std::uint32_t idx = 0;
  // The fill ring holds every frame, so room for the ones we got is always there.
  std::uint32_t got = xsk_ring_prod__reserve(&fill_, n, &idx);
  for (std::uint32_t i = 0; i < got; ++i) {
    *xsk_ring_prod__fill_addr(&fill_, idx + i) = frames[i].handle & ~std::uint64_t(frame_size_ - 1);
  }
  xsk_ring_prod__submit(&fill_, got);
}

std::uint32_t AfXdpPort::tx_alloc_burst(Frame* frames, std::uint32_t n) noexcept {
  if (tx_pool_.size() < n) poll_completions();
  std::uint32_t got = n < tx_pool_.size() ? n : std::uint32_t(tx_pool_.size());
  auto* base = umem_area_.base();
  for (std::uint32_t i = 0; i < got; ++i) {
    std::uint64_t addr = tx_pool_.back();
    tx_pool_.pop_back();
    frames[i].data = static_cast<std::uint8_t*>(xsk_umem__get_data(base, addr));
    frames[i].len = frame_size_;
    frames[i].handle = addr;
  }
  if (got < n) counters_.tx_pool_empty += n - got;
  return got;
}

void AfXdpPort::tx_free(const Frame* frames, std::uint32_t n) noexcept {
  // tx_pool_ was reserved for every TX frame, so this never allocates.
  for (std::uint32_t i = 0; i < n; ++i) tx_pool_.push_back(frames[i].handle);
}

std::uint32_t AfXdpPort::tx_burst(const Frame* frames, std::uint32_t n) noexcept {
  if (n == 0) return 0;
  std::uint32_t idx = 0;
  std::uint32_t got = xsk_ring_prod__reserve(&tx_, n, &idx);
  for (std::uint32_t i = 0; i < got; ++i) {
    xdp_desc* desc = xsk_ring_prod__tx_desc(&tx_, idx + i);
    desc->addr = frames[i].handle;
    desc->len = frames[i].len;
    desc->options = 0;
  }
  xsk_ring_prod__submit(&tx_, got);
  counters_.tx_frames += got;
  if (got < n) counters_.tx_ring_full += n - got;
  kick_tx();
  return got;
}

void AfXdpPort::kick_tx() noexcept {
  if (xsk_ring_prod__needs_wakeup(&tx_)) {
    ++counters_.wakeups;
    sendto(xsk_socket__fd(xsk_), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
  }
}

void AfXdpPort::poll_completions() noexcept {
  std::uint32_t idx = 0;
  std::uint32_t n = xsk_ring_cons__peek(&comp_, 64, &idx);
  for (std::uint32_t i = 0; i < n; ++i) tx_pool_.push_back(*xsk_ring_cons__comp_addr(&comp_, idx + i));
  if (n > 0) xsk_ring_cons__release(&comp_, n);
  // Frames still queued in copy mode only move when we kick again.
  if (xsk_prod_nb_free(&tx_, tx_.size) < tx_.size) kick_tx();
}

}  // namespace axon::dataplane
