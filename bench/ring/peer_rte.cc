// Peer: DPDK rte_ring in single-producer/single-consumer mode with 64-byte elements,
// formatted with rte_ring_init() on the shared region. No EAL is initialised: the ring
// init and the inline enqueue/dequeue paths need none (checked: init returns 0, and the
// consumer verifies every message).
#include "bench.h"

#if AXON_BENCH_HAVE_DPDK
#include <rte_ring.h>
#include <rte_ring_elem.h>

namespace axon::bench {
namespace {

#define AXON_STR2(x) #x
#define AXON_STR(x) AXON_STR2(x)

constexpr unsigned kFlags = RING_F_SP_ENQ | RING_F_SC_DEQ;

std::size_t ring_bytes() {
  return (std::size_t(rte_ring_get_memsize_elem(sizeof(Msg64), kCapacity)) + 4095) & ~4095ul;
}
std::size_t area_bytes() {
  return 2 * ring_bytes();
}
rte_ring* ring_of(std::byte* area, int channel) {
  return reinterpret_cast<rte_ring*>(area + std::size_t(channel) * ring_bytes());
}

bool g_init_failed = false;

void init(std::byte* area) {
  for (int c = 0; c < 2; ++c) {
    std::memset(static_cast<void*>(ring_of(area, c)), 0, ring_bytes());
    if (rte_ring_init(ring_of(area, c), c == 0 ? "bench0" : "bench1", kCapacity, kFlags) != 0) g_init_failed = true;
  }
}

struct RteSide {
  using Msg = Msg64;
  rte_ring* out;
  rte_ring* in;
  RteSide(std::byte* area, int role) : out(ring_of(area, role == 0 ? 0 : 1)), in(ring_of(area, role == 0 ? 1 : 0)) {}
  bool push1(const Msg& m) noexcept { return rte_ring_sp_enqueue_elem(out, const_cast<Msg*>(&m), sizeof(Msg)) == 0; }
  bool pop1(Msg& m) noexcept { return rte_ring_sc_dequeue_elem(in, &m, sizeof(Msg)) == 0; }
  std::uint32_t push_burst(const Msg* m, std::uint32_t n) noexcept {
    return rte_ring_sp_enqueue_burst_elem(out, m, sizeof(Msg), n, nullptr);
  }
  std::uint32_t pop_burst(Msg* m, std::uint32_t n) noexcept {
    return rte_ring_sc_dequeue_burst_elem(in, m, sizeof(Msg), n, nullptr);
  }
  void after_push() noexcept {}
};

int child(std::byte* area, Workload workload, int role, Control& ctl, const Params& p) {
  if (g_init_failed) {
    fail(ctl.role[role], "rte_ring_init failed on plain shared memory");
    return 1;
  }
  RteSide side(area, role);
  return run_role(side, workload, role, ctl, p);
}

}  // namespace

Peer rte_ring_peer() {
  return Peer{"rte_ring", "DPDK rte_ring SP/SC", "64 B", 64, true, true, false, nullptr, &area_bytes, &init, &child,
              "DPDK " AXON_STR(RTE_VER_YEAR) "." AXON_STR(RTE_VER_MONTH) "." AXON_STR(RTE_VER_MINOR)
              " rte_ring_init() on the shared region, flags RING_F_SP_ENQ|RING_F_SC_DEQ, "
              "elem size 64, *_sp_enqueue_*_elem / *_sc_dequeue_*_elem; count 1024 holds 1023"};
}

}  // namespace axon::bench

#else

namespace axon::bench {
Peer rte_ring_peer() {
  return Peer{"rte_ring", "DPDK rte_ring SP/SC",
              "64 B",     64,
              true,       true,
              false,      "not built: libdpdk (dpdk-dev) was not found at configure time",
              nullptr,    nullptr,
              nullptr,    ""};
}
}  // namespace axon::bench

#endif
