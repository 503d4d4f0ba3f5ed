// Peer: the latency floor. Two 64-bit atomics, each alone on its own 128-byte-aligned
// line; A writes its line and spins on B's, B echoes. No ring, no payload: one cache
// line crosses each way, which is the least any shared-memory handoff can cost.
#include <new>

#include "bench.h"

namespace axon::bench {
namespace {

struct Line {
  alignas(shm::kFalseSharingRange) std::atomic<std::uint64_t> value;
};
struct BaselineArea {
  Line line[2];
};

// Just a sequence number: the echo check still runs on every round trip.
struct Token {
  std::uint64_t seq;
};
void set_msg(Token& t, std::uint64_t seq) noexcept {
  t.seq = seq;
}
bool msg_ok(const Token& t, std::uint64_t seq) noexcept {
  return t.seq == seq;
}
std::uint64_t msg_seq(const Token& t) noexcept {
  return t.seq;
}

std::size_t area_bytes() {
  return sizeof(BaselineArea);
}
void init(std::byte* area) {
  auto* a = new (area) BaselineArea{};
  a->line[0].value.store(0, std::memory_order_relaxed);
  a->line[1].value.store(0, std::memory_order_relaxed);
}

struct BaselineSide {
  using Msg = Token;
  std::atomic<std::uint64_t>* out;
  std::atomic<std::uint64_t>* in;
  std::uint64_t seen = 0;
  BaselineSide(std::byte* area, int role) {
    auto* a = reinterpret_cast<BaselineArea*>(area);
    out = &a->line[role == 0 ? 0 : 1].value;
    in = &a->line[role == 0 ? 1 : 0].value;
  }
  bool push1(const Msg& m) noexcept {
    out->store(m.seq + 1, std::memory_order_release);
    return true;
  }
  bool pop1(Msg& m) noexcept {
    const std::uint64_t v = in->load(std::memory_order_acquire);
    if (v == seen) return false;
    seen = v;
    m.seq = v - 1;
    return true;
  }
  std::uint32_t push_burst(const Msg*, std::uint32_t) noexcept { return 0; }
  std::uint32_t pop_burst(Msg*, std::uint32_t) noexcept { return 0; }
  void after_push() noexcept {}
};

int child(std::byte* area, Workload workload, int role, Control& ctl, const Params& p) {
  if (workload != Workload::pingpong) {
    fail(ctl.role[role], "the cache-line baseline only runs ping-pong");
    return 1;
  }
  BaselineSide side(area, role);
  return run_role(side, workload, role, ctl, p);
}

}  // namespace

Peer baseline_peer() {
  return Peer{"cacheline_pingpong",
              "plain cache-line ping-pong",
              "8 B",
              8,
              false,
              true,
              false,
              nullptr,
              &area_bytes,
              &init,
              &child,
              "latency floor: two std::atomic<uint64_t> on separate 128-byte lines, same spin loop as the rings"};
}

}  // namespace axon::bench
