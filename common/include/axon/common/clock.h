// Time sources for the hot path: TSC reads and a one-time calibration to nanoseconds.
#pragma once

#include <cstdint>
#include <ctime>

namespace axon {

inline std::uint64_t rdtsc() noexcept {
  std::uint32_t lo, hi;
  asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (std::uint64_t{hi} << 32) | lo;
}

// CLOCK_MONOTONIC in ns; the time base every process agrees on without sharing anything.
inline std::uint64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1'000'000'000ull + std::uint64_t(ts.tv_nsec);
}

// TSC ticks per ns, measured once against CLOCK_MONOTONIC (about 20 ms).
double tsc_ticks_per_ns() noexcept;

// CLOCK_MONOTONIC nanoseconds read through the TSC: ns = ns_base + (tsc - tsc_base) * mult >> shift,
// a line fitted once against clock_gettime (calibrate_tsc). A rdtsc costs a few ns where a
// clock_gettime through kvm-clock costs tens; the hop stamps take one per burst. Processes that
// compare stamps (the data plane and its workers) share one calibration: the data plane's, published
// in each worker segment's header. mult == 0 means "no TSC": now_ns() reads CLOCK_MONOTONIC.
struct TscClock {
  std::uint64_t tsc_base = 0;
  std::uint64_t ns_base = 0;
  std::uint32_t mult = 0;
  std::uint32_t shift = 0;

  [[nodiscard]] bool uses_tsc() const noexcept { return mult != 0; }

  [[nodiscard]] std::uint64_t to_ns(std::uint64_t tsc) const noexcept {
    // Signed: another core's TSC may read a few ticks below the base taken on this one.
    const auto delta = std::int64_t(tsc - tsc_base);
    const auto magnitude = static_cast<unsigned __int128>(delta < 0 ? -delta : delta);
    const auto ns = std::uint64_t((magnitude * mult) >> shift);
    return delta < 0 ? ns_base - ns : ns_base + ns;
  }

  [[nodiscard]] std::uint64_t now_ns() const noexcept { return mult != 0 ? to_ns(rdtsc()) : monotonic_ns(); }
};

// True when the CPU says its TSC runs at a constant rate through P- and C-states (CPUID
// 0x80000007 EDX bit 8: Linux's constant_tsc + nonstop_tsc flags).
bool invariant_tsc() noexcept;

// Fits a TscClock against CLOCK_MONOTONIC over about `window_ms` (each end: the clock_gettime
// read bracketed most tightly by two rdtsc). Returns mult == 0 without an invariant TSC, or when
// `AXON_HOP_CLOCK=monotonic` is set in the environment; `why` then says which (may be null).
TscClock calibrate_tsc(std::uint32_t window_ms, const char** why) noexcept;

// This process's clock, calibrated at the first call (20 ms) and logged once.
const TscClock& process_clock() noexcept;

inline void cpu_relax() noexcept {
  __builtin_ia32_pause();
}

}  // namespace axon
