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

// CLOCK_MONOTONIC in ns; the timestamp that crosses process boundaries, since every
// process agrees on it without sharing a calibration.
inline std::uint64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1'000'000'000ull + std::uint64_t(ts.tv_nsec);
}

// TSC ticks per ns, measured once against CLOCK_MONOTONIC (about 20 ms).
double tsc_ticks_per_ns() noexcept;

inline void cpu_relax() noexcept {
  __builtin_ia32_pause();
}

}  // namespace axon
