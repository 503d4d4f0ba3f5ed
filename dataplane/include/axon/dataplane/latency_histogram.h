// Log-linear latency histograms (HdrHistogram-like) for the per-stage latencies the engine
// records in the stats file, and the arithmetic every reader shares (bucket edges, merge,
// quantiles, the Prometheus `le` edges). Header-only: the control plane and the tools use it
// without linking the engine.
//
// Buckets, for a value v in nanoseconds:
//   v < 64:             one bucket per nanosecond (exact);
//   2^m <= v < 2^(m+1), m = 6..33: 32 linear sub-buckets of width 2^(m-5).
// A bucket's width is at most 1/32 of its lower edge, so any value read back as its bucket's
// midpoint is within 1/64 (1.6%) of the recorded value, and a quantile estimate is within
// that bound of a recorded sample's value, from 64 ns to 2^34 ns (17.2 s). Values at or
// above 2^34 ns land in the last bucket (overflow).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace axon::dataplane {

inline constexpr std::uint32_t kHistogramSubBits = 5;  // 32 sub-buckets
inline constexpr std::uint32_t kHistogramSubBuckets = 1u << kHistogramSubBits;
inline constexpr std::uint32_t kHistogramMaxBit = 34;  // values < 2^34 ns
inline constexpr std::uint32_t kHistogramBuckets = (kHistogramMaxBit - kHistogramSubBits + 1) * kHistogramSubBuckets;
static_assert(kHistogramBuckets == 960);

// The stages of a request's way through axon, between two hop stamps (docs/observability.md).
enum class Stage : std::uint32_t {
  ingress = 0,  // rx (first userspace sight) -> enqueued to the worker's ring
  queue = 1,    // enqueued -> the worker took it off its ring
  handler = 2,  // worker dequeue -> the handler's reply was completed
  ret = 3,      // handler done -> the data plane took the reply off the reply ring
  egress = 4,   // reply dequeue -> the reply frame was handed to the port (transmit)
  total = 5,    // rx -> transmit
};
inline constexpr std::size_t kStageCount = 6;
[[nodiscard]] constexpr const char* to_string(Stage stage) noexcept {
  switch (stage) {
    case Stage::ingress: return "ingress";
    case Stage::queue: return "queue";
    case Stage::handler: return "handler";
    case Stage::ret: return "return";
    case Stage::egress: return "egress";
    case Stage::total: return "total";
  }
  return "?";
}

[[nodiscard]] constexpr std::uint32_t histogram_bucket(std::uint64_t ns) noexcept {
  if (ns < 2 * kHistogramSubBuckets) return std::uint32_t(ns);
  const std::uint32_t top = std::uint32_t(63 - std::countl_zero(ns));  // 2^top <= ns
  if (top >= kHistogramMaxBit) return kHistogramBuckets - 1;
  const std::uint32_t shift = top - kHistogramSubBits;  // >= 1
  return (shift + 1) * kHistogramSubBuckets + std::uint32_t(ns >> shift) - kHistogramSubBuckets;
}

// Lowest value of bucket b, and its width: the bucket holds [lower, lower + width).
[[nodiscard]] constexpr std::uint64_t histogram_lower(std::uint32_t b) noexcept {
  if (b < 2 * kHistogramSubBuckets) return b;
  const std::uint32_t shift = b / kHistogramSubBuckets - 1;
  return std::uint64_t(b % kHistogramSubBuckets + kHistogramSubBuckets) << shift;
}
[[nodiscard]] constexpr std::uint64_t histogram_width(std::uint32_t b) noexcept {
  return b < 2 * kHistogramSubBuckets ? 1 : std::uint64_t{1} << (b / kHistogramSubBuckets - 1);
}

// Quantile q (0..1) of a bucket array, as the midpoint of the bucket holding the sample of
// rank ceil(q * count) (at least 1); 0 for an empty histogram.
[[nodiscard]] inline double histogram_quantile_ns(const std::uint64_t* buckets, double q) noexcept {
  std::uint64_t total = 0;
  for (std::uint32_t b = 0; b < kHistogramBuckets; ++b) total += buckets[b];
  if (total == 0) return 0;
  double want_d = q * double(total);
  std::uint64_t want = std::uint64_t(want_d);
  if (double(want) < want_d) ++want;
  if (want == 0) want = 1;
  std::uint64_t seen = 0;
  for (std::uint32_t b = 0; b < kHistogramBuckets; ++b) {
    seen += buckets[b];
    if (seen >= want) return double(histogram_lower(b)) + double(histogram_width(b) - 1) / 2.0;
  }
  return 0;
}

// The fixed, bounded set of Prometheus `le` edges (in ns): 2^m and 1.5 * 2^m for m = 7..33
// (128 ns .. 12.9 s). Each is a bucket boundary, so the cumulative count of samples below an
// edge is exact (a sample of exactly the edge's value counts in the next one).
inline constexpr std::uint32_t kPrometheusEdges = 2 * (33 - 7 + 1);
[[nodiscard]] constexpr std::uint64_t prometheus_edge_ns(std::uint32_t i) noexcept {
  const std::uint32_t m = 7 + i / 2;
  return (i % 2 == 0) ? (std::uint64_t{1} << m) : (std::uint64_t{3} << (m - 1));
}

}  // namespace axon::dataplane
