// LatencyHistogram: bucket bounds, merging and percentiles.
#include "axon/loadgen/histogram.h"

#include <algorithm>
#include <cmath>

namespace axon::loadgen {
namespace {

// The smallest ns whose q = floor(ns * 64 / 1000) reaches `q`: ceil(q * 1000 / 64).
std::uint64_t ns_of_q(std::uint64_t q) noexcept {
  return (q * 1000 + LatencyHistogram::kSub - 1) / LatencyHistogram::kSub;
}

}  // namespace

std::uint64_t LatencyHistogram::bucket_lower_ns(std::size_t bucket) noexcept {
  if (bucket == kUnderflow) return 0;
  if (bucket >= kOverflow) return kMaxNs + 1;
  std::uint64_t octave = (bucket - 1) / kSub;
  std::uint64_t sub = (bucket - 1) % kSub;
  return ns_of_q((kSub + sub) << octave);
}

std::uint64_t LatencyHistogram::bucket_upper_ns(std::size_t bucket) noexcept {
  if (bucket == kUnderflow) return kMinNs;
  if (bucket >= kOverflow) return UINT64_MAX;
  // The last regular bucket is cut at kMaxNs: larger values go to the overflow bucket.
  return std::min(bucket_lower_ns(bucket + 1), kMaxNs + 1);
}

void LatencyHistogram::merge(const LatencyHistogram& other) noexcept {
  for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ns_ += other.sum_ns_;
  min_ns_ = std::min(min_ns_, other.min_ns_);
  max_ns_ = std::max(max_ns_, other.max_ns_);
}

void LatencyHistogram::reset() noexcept {
  *this = LatencyHistogram{};
}

std::uint64_t LatencyHistogram::percentile_ns(double p) const noexcept {
  if (count_ == 0) return 0;
  // The extremes are known exactly; only ranks in between fall back to bucket precision.
  if (p <= 0.0) return min_ns();
  if (p >= 100.0) return max_ns_;
  // The rank of the value asked for, 1-based: p = 50 of 10 values is the 5th, p = 100 the last.
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen < rank) continue;
    if (i == kOverflow) return max_ns_;
    std::uint64_t lo = bucket_lower_ns(i);
    std::uint64_t hi = bucket_upper_ns(i);
    std::uint64_t mid = lo + (hi - lo) / 2;
    return std::clamp(mid, min_ns(), max_ns_);
  }
  return max_ns_;
}

}  // namespace axon::loadgen
