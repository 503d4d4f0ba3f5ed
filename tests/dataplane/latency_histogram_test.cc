// The log-linear latency histogram (latency_histogram.h): contiguous monotone buckets, the
// documented relative error bound over 100 ns .. 10 s, and the Prometheus edges.
#include "axon/dataplane/latency_histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace axon::dataplane {
namespace {

constexpr double kBound = 1.0 / 64;  // docs/observability.md: half of a bucket's 1/32 width

TEST(LatencyHistogram, BucketsAreContiguousMonotoneAndNarrow) {
  EXPECT_EQ(histogram_lower(0), 0u);
  for (std::uint32_t b = 0; b + 1 < kHistogramBuckets; ++b) {
    ASSERT_EQ(histogram_lower(b + 1), histogram_lower(b) + histogram_width(b)) << "bucket " << b;
    ASSERT_EQ(histogram_bucket(histogram_lower(b)), b);
    ASSERT_EQ(histogram_bucket(histogram_lower(b) + histogram_width(b) - 1), b);
    if (b >= 2 * kHistogramSubBuckets) {
      ASSERT_LE(histogram_width(b) * 32, histogram_lower(b)) << "bucket " << b;
    }
  }
  // The last bucket starts below 10 s and takes every larger value (overflow).
  EXPECT_LT(histogram_lower(kHistogramBuckets - 1), std::uint64_t{1} << kHistogramMaxBit);
  EXPECT_GT(histogram_lower(kHistogramBuckets - 1), 10'000'000'000ull);
  EXPECT_EQ(histogram_bucket(~std::uint64_t{0}), kHistogramBuckets - 1);
}

TEST(LatencyHistogram, EveryValueFrom100nsTo10sReadsBackWithinTheBound) {
  std::mt19937_64 rng(15);
  for (double v = 100; v <= 1e10; v *= 1.01) {
    const auto value = std::uint64_t(v) + rng() % 7;
    std::vector<std::uint64_t> buckets(kHistogramBuckets, 0);
    buckets[histogram_bucket(value)] = 1;
    for (double q : {0.0, 0.5, 1.0}) {
      const double got = histogram_quantile_ns(buckets.data(), q);
      ASSERT_LE(std::fabs(got - double(value)), kBound * double(value)) << value << " read back as " << got;
    }
  }
}

TEST(LatencyHistogram, QuantilesOfAKnownDistributionAreWithinTheBound) {
  // Log-uniform samples over 100 ns .. 10 s: every order of magnitude is exercised.
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> exponent(2.0, 10.0);
  std::vector<std::uint64_t> samples;
  std::vector<std::uint64_t> buckets(kHistogramBuckets, 0);
  for (int i = 0; i < 20000; ++i) {
    const auto value = std::uint64_t(std::pow(10.0, exponent(rng)));
    samples.push_back(value);
    ++buckets[histogram_bucket(value)];
  }
  std::sort(samples.begin(), samples.end());
  for (double q : {0.01, 0.1, 0.5, 0.9, 0.99, 0.999}) {
    const std::uint64_t exact = samples[std::size_t(std::ceil(q * double(samples.size()))) - 1];
    const double got = histogram_quantile_ns(buckets.data(), q);
    EXPECT_LE(std::fabs(got - double(exact)), kBound * double(exact)) << "q " << q << ": " << got << " vs " << exact;
  }
  EXPECT_EQ(histogram_quantile_ns(std::vector<std::uint64_t>(kHistogramBuckets, 0).data(), 0.5), 0.0);
}

TEST(LatencyHistogram, PrometheusEdgesAreIncreasingBucketBoundariesFromSubMicrosecondsToSeconds) {
  EXPECT_LE(prometheus_edge_ns(0), 200u);
  EXPECT_GE(prometheus_edge_ns(kPrometheusEdges - 1), 10'000'000'000ull);
  for (std::uint32_t i = 0; i < kPrometheusEdges; ++i) {
    const std::uint64_t edge = prometheus_edge_ns(i);
    if (i > 0) {
      ASSERT_GT(edge, prometheus_edge_ns(i - 1));
    }
    ASSERT_EQ(histogram_lower(histogram_bucket(edge)), edge) << "edge " << edge << " splits a bucket";
  }
}

}  // namespace
}  // namespace axon::dataplane
