// Peer: Boost.Lockfree spsc_queue with compile-time capacity, constructed in place in
// the shared region. With capacity<N> the storage is inline and the two indices are
// std::size_t atomics, so the object holds no pointer and works across processes that
// map the region (fork keeps the address, so the object is at the same place in both).
#include "bench.h"

#if AXON_BENCH_HAVE_BOOST
#include <boost/lockfree/spsc_queue.hpp>
#include <boost/version.hpp>
#include <new>

namespace axon::bench {
namespace {

using Queue = boost::lockfree::spsc_queue<Msg64, boost::lockfree::capacity<kCapacity>>;
static_assert(std::is_trivially_copyable_v<Msg64>);

constexpr std::size_t queue_bytes() {
  return (sizeof(Queue) + 4095) & ~std::size_t{4095};
}
std::size_t area_bytes() {
  return 2 * queue_bytes();
}
Queue* queue_of(std::byte* area, int channel) {
  return std::launder(reinterpret_cast<Queue*>(area + std::size_t(channel) * queue_bytes()));
}

void init(std::byte* area) {
  for (int c = 0; c < 2; ++c) {
    std::memset(static_cast<void*>(area + std::size_t(c) * queue_bytes()), 0, queue_bytes());
    new (area + std::size_t(c) * queue_bytes()) Queue();
  }
}

struct BoostSide {
  using Msg = Msg64;
  Queue* out;
  Queue* in;
  BoostSide(std::byte* area, int role)
      : out(queue_of(area, role == 0 ? 0 : 1)), in(queue_of(area, role == 0 ? 1 : 0)) {}
  bool push1(const Msg& m) noexcept { return out->push(m); }
  bool pop1(Msg& m) noexcept { return in->pop(m); }
  std::uint32_t push_burst(const Msg* m, std::uint32_t n) noexcept { return std::uint32_t(out->push(m, n)); }
  std::uint32_t pop_burst(Msg* m, std::uint32_t n) noexcept { return std::uint32_t(in->pop(m, n)); }
  void after_push() noexcept {}
};

int child(std::byte* area, Workload workload, int role, Control& ctl, const Params& p) {
  BoostSide side(area, role);
  return run_role(side, workload, role, ctl, p);
}

}  // namespace

Peer boost_peer() {
  return Peer{"boost_spsc",
              "Boost.Lockfree spsc_queue",
              "64 B",
              64,
              true,
              true,
              false,
              nullptr,
              &area_bytes,
              &init,
              &child,
              "boost::lockfree::spsc_queue<Msg64, capacity<1024>> (Boost " BOOST_LIB_VERSION
              ") placement-new in the shared region; push/pop and the (ptr, n) burst overloads"};
}

}  // namespace axon::bench

#else

namespace axon::bench {
Peer boost_peer() {
  return Peer{"boost_spsc", "Boost.Lockfree spsc_queue",
              "64 B",       64,
              true,         true,
              false,        "not built: boost/lockfree/spsc_queue.hpp (libboost-dev) was not found at configure time",
              nullptr,      nullptr,
              nullptr,      ""};
}
}  // namespace axon::bench

#endif
