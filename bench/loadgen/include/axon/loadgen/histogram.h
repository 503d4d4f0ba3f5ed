// A fixed-size log-linear latency histogram (1 µs to 10 s, about 1.6% bucket width) that records
// without allocating, so the load generator can record every reply on its hot path.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace axon::loadgen {

class LatencyHistogram {
 public:
  static constexpr std::uint64_t kMinNs = 1'000;           // below 1 µs: the underflow bucket
  static constexpr std::uint64_t kMaxNs = 10'000'000'000;  // above 10 s: the overflow bucket
  // 2^kSubBits linear buckets per power of two: the width of a bucket is at most 1/64 of its
  // lower bound, so a reported percentile is within 1.6% of the true value.
  static constexpr unsigned kSubBits = 6;
  static constexpr std::uint64_t kSub = 1ull << kSubBits;
  // 1 µs * 2^24 = 16.8 s > kMaxNs: every value up to kMaxNs has a regular bucket.
  static constexpr unsigned kOctaves = 24;
  static constexpr std::size_t kUnderflow = 0;
  static constexpr std::size_t kOverflow = 1 + kOctaves * kSub;
  static constexpr std::size_t kBuckets = kOverflow + 1;

  void record(std::uint64_t ns) noexcept {
    ++counts_[bucket_of(ns)];
    ++count_;
    sum_ns_ += ns;
    if (ns < min_ns_) min_ns_ = ns;
    if (ns > max_ns_) max_ns_ = ns;
  }

  void merge(const LatencyHistogram& other) noexcept;
  void reset() noexcept;

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t min_ns() const noexcept { return count_ ? min_ns_ : 0; }
  [[nodiscard]] std::uint64_t max_ns() const noexcept { return max_ns_; }
  [[nodiscard]] double mean_ns() const noexcept {
    return count_ ? static_cast<double>(sum_ns_) / static_cast<double>(count_) : 0.0;
  }
  [[nodiscard]] std::uint64_t bucket_count(std::size_t bucket) const noexcept { return counts_[bucket]; }

  // The share of recorded values at or above ns (to the bucket's 1.6% resolution); 0 when empty.
  [[nodiscard]] double fraction_at_or_above(std::uint64_t ns) const noexcept {
    if (count_ == 0) return 0.0;
    std::uint64_t n = 0;
    for (std::size_t b = bucket_of(ns); b < kBuckets; ++b) n += counts_[b];
    return static_cast<double>(n) / static_cast<double>(count_);
  }

  // The value below which p percent of the recorded values fall (p in [0, 100]), as the middle
  // of the bucket that holds that rank, clamped to the observed min and max; p = 0 and p = 100
  // are the exact min and max. 0 when empty.
  [[nodiscard]] std::uint64_t percentile_ns(double p) const noexcept;

  // Bucket arithmetic, public for tests: values in [lower, upper) share a bucket.
  [[nodiscard]] static std::size_t bucket_of(std::uint64_t ns) noexcept {
    if (ns < kMinNs) return kUnderflow;
    if (ns > kMaxNs) return kOverflow;
    // q counts in 1/64 µs, so [1 µs, 2 µs) is q in [64, 128): octave 0 with 64 linear buckets.
    std::uint64_t q = ns * kSub / 1000;
    unsigned msb = 63u - static_cast<unsigned>(__builtin_clzll(q));
    unsigned octave = msb - kSubBits;
    std::uint64_t sub = (q >> octave) - kSub;
    return 1 + octave * kSub + sub;
  }
  [[nodiscard]] static std::uint64_t bucket_lower_ns(std::size_t bucket) noexcept;
  [[nodiscard]] static std::uint64_t bucket_upper_ns(std::size_t bucket) noexcept;

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ns_ = 0;
  std::uint64_t min_ns_ = UINT64_MAX;
  std::uint64_t max_ns_ = 0;
};

}  // namespace axon::loadgen
