// Open-loop arrival schedules: a seeded PRNG and Poisson (exponential inter-arrival) send times,
// computed ahead of sending so that latency can be charged from the intended time.
#pragma once

#include <cmath>
#include <cstdint>

namespace axon::loadgen {

// splitmix64: fast, seedable and good enough for arrival jitter and load spreading; a fixed seed
// makes a run's schedule reproducible.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

// Send times of a Poisson process with the given rate, starting at start_ns. The offset from
// the start is kept as a double (exact to the ns for the 600 s a run may last), so rounding never
// accumulates into a drift of the achieved rate.
class PoissonSchedule {
 public:
  PoissonSchedule(double rate_per_s, std::uint64_t seed, std::uint64_t start_ns) noexcept
      : mean_gap_ns_(1e9 / rate_per_s), start_ns_(start_ns), rng_(seed) {}

  // An exponential gap: -ln(1 - U) * mean, with U in [0, 1), so the log argument is never 0.
  double next_gap_ns() noexcept { return -std::log1p(-rng_.uniform()) * mean_gap_ns_; }

  // The next intended send time (CLOCK_MONOTONIC ns); each call advances the schedule.
  std::uint64_t next() noexcept {
    offset_ns_ += next_gap_ns();
    return start_ns_ + static_cast<std::uint64_t>(offset_ns_);
  }

  [[nodiscard]] double mean_gap_ns() const noexcept { return mean_gap_ns_; }
  Rng& rng() noexcept { return rng_; }

 private:
  double mean_gap_ns_;
  std::uint64_t start_ns_;
  double offset_ns_ = 0.0;
  Rng rng_;
};

}  // namespace axon::loadgen
