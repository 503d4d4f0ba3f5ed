// TSC calibration against CLOCK_MONOTONIC.
#include "axon/common/clock.h"

#include <atomic>

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

}  // namespace axon
