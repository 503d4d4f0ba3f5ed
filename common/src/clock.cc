// TSC calibration against CLOCK_MONOTONIC.
#include "axon/common/clock.h"

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "axon/common/log.h"

namespace axon {

double tsc_ticks_per_ns() noexcept {
  static std::atomic<double> cached{0.0};
  double value = cached.load(std::memory_order_relaxed);
  if (value > 0) return value;
  std::uint64_t ns0 = monotonic_ns();
  std::uint64_t tsc0 = rdtsc();
  while (monotonic_ns() - ns0 < 20'000'000) cpu_relax();
  std::uint64_t ns1 = monotonic_ns();
  std::uint64_t tsc1 = rdtsc();
  value = double(tsc1 - tsc0) / double(ns1 - ns0);
  cached.store(value, std::memory_order_relaxed);
  return value;
}

bool invariant_tsc() noexcept {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000007u) return false;
  __cpuid(0x80000007u, eax, ebx, ecx, edx);
  return (edx & (1u << 8)) != 0;
}

namespace {

struct Pair {
  std::uint64_t tsc;
  std::uint64_t ns;
};

// One (tsc, ns) pair: of a few tries, the clock_gettime whose two surrounding rdtsc are closest,
// with the TSC taken midway, so a preemption or a slow read does not skew the fit.
Pair sample_pair() noexcept {
  Pair best{0, 0};
  std::uint64_t best_width = ~std::uint64_t{0};
  for (int i = 0; i < 16; ++i) {
    const std::uint64_t before = rdtsc();
    const std::uint64_t ns = monotonic_ns();
    const std::uint64_t after = rdtsc();
    if (after - before < best_width) {
      best_width = after - before;
      best = Pair{before + (after - before) / 2, ns};
    }
  }
  return best;
}

}  // namespace

TscClock calibrate_tsc(std::uint32_t window_ms, const char** why) noexcept {
  const char* reason = nullptr;
  if (const char* forced = std::getenv("AXON_HOP_CLOCK"); forced != nullptr && std::strcmp(forced, "monotonic") == 0) {
    reason = "AXON_HOP_CLOCK=monotonic";
  } else if (!invariant_tsc()) {
    reason = "the CPU reports no invariant TSC (constant_tsc/nonstop_tsc)";
  }
  if (reason != nullptr) {
    if (why != nullptr) *why = reason;
    return TscClock{};
  }
  const Pair start = sample_pair();
  const std::uint64_t until = start.ns + std::uint64_t(window_ms) * 1'000'000u;
  while (monotonic_ns() < until) cpu_relax();
  const Pair end = sample_pair();
  if (end.tsc <= start.tsc || end.ns <= start.ns) {
    if (why != nullptr) *why = "the TSC did not advance with CLOCK_MONOTONIC during calibration";
    return TscClock{};
  }
  // mult / 2^shift ns per tick: shift 32 keeps 9 significant digits, and mult fits 32 bits for
  // any TSC above 1 GHz.
  TscClock clock;
  clock.shift = 32;
  const auto scaled = (static_cast<unsigned __int128>(end.ns - start.ns) << clock.shift) / (end.tsc - start.tsc);
  if (scaled == 0 || scaled > 0xffffffffu) {
    if (why != nullptr) *why = "the TSC runs below 1 GHz";
    return TscClock{};
  }
  clock.mult = std::uint32_t(scaled);
  clock.tsc_base = end.tsc;
  clock.ns_base = end.ns;
  if (why != nullptr) *why = nullptr;
  return clock;
}

const TscClock& process_clock() noexcept {
  static const TscClock clock = [] {
    const char* why = nullptr;
    TscClock c = calibrate_tsc(20, &why);
    if (c.uses_tsc()) {
      AXON_LOG_INFO("clock", "hop stamps read the TSC: %.4f ticks per ns, calibrated against CLOCK_MONOTONIC",
                    double(std::uint64_t{1} << c.shift) / double(c.mult));
    } else {
      AXON_LOG_WARN("clock", "hop stamps read clock_gettime(CLOCK_MONOTONIC): %s", why);
    }
    return c;
  }();
  return clock;
}

}  // namespace axon
