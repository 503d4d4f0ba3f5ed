// The load generator's arithmetic, deterministically: histogram buckets and percentiles, the
// Poisson schedule's statistics under a fixed seed, id lists, and the malformed datagrams (each
// must break exactly the rule it is named after).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "axon/loadgen/histogram.h"
#include "axon/loadgen/id_list.h"
#include "axon/loadgen/malformed.h"
#include "axon/loadgen/schedule.h"
#include "axon/protocol/axp.h"

namespace {

using axon::loadgen::IdList;
using axon::loadgen::LatencyHistogram;
using axon::loadgen::MalformedKind;
using axon::loadgen::PoissonSchedule;
namespace p = axon::protocol;

TEST(Histogram, BucketsAreContiguousAndNarrow) {
  EXPECT_EQ(LatencyHistogram::bucket_of(0), LatencyHistogram::kUnderflow);
  EXPECT_EQ(LatencyHistogram::bucket_of(999), LatencyHistogram::kUnderflow);
  EXPECT_EQ(LatencyHistogram::bucket_of(1000), 1u);
  EXPECT_EQ(LatencyHistogram::bucket_of(LatencyHistogram::kMaxNs + 1), LatencyHistogram::kOverflow);
  EXPECT_NE(LatencyHistogram::bucket_of(LatencyHistogram::kMaxNs), LatencyHistogram::kOverflow);
  for (std::size_t b = 1; b < LatencyHistogram::kOverflow; ++b) {
    std::uint64_t lo = LatencyHistogram::bucket_lower_ns(b);
    std::uint64_t hi = LatencyHistogram::bucket_upper_ns(b);
    if (lo >= hi) continue;  // past kMaxNs: the tail of the last octave holds no values
    ASSERT_EQ(LatencyHistogram::bucket_of(lo), b) << "bucket " << b;
    ASSERT_EQ(LatencyHistogram::bucket_of(hi - 1), b) << "bucket " << b;
    if (hi <= LatencyHistogram::kMaxNs) {
      ASSERT_EQ(LatencyHistogram::bucket_lower_ns(b + 1), hi) << "gap after bucket " << b;
    }
    // Width at most 1/64 of the lower bound (+1 ns of rounding): the 1.6% precision promise.
    ASSERT_LE(static_cast<double>(hi - lo), static_cast<double>(lo) / 64.0 + 1.0) << "bucket " << b;
  }
  std::size_t prev = 0;
  for (std::uint64_t ns = 1; ns < 20'000'000'000ull; ns = ns * 3 / 2 + 1) {
    std::size_t b = LatencyHistogram::bucket_of(ns);
    ASSERT_GE(b, prev) << ns;
    prev = b;
  }
}

TEST(Histogram, PercentilesOfAUniformRangeAreWithinTheBucketPrecision) {
  LatencyHistogram h;
  for (std::uint64_t us = 1; us <= 100'000; ++us) h.record(us * 1000);
  EXPECT_EQ(h.count(), 100'000u);
  EXPECT_EQ(h.min_ns(), 1000u);
  EXPECT_EQ(h.max_ns(), 100'000'000u);
  EXPECT_NEAR(h.mean_ns(), 50'000.5e3, 1.0);
  for (double pct : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9}) {
    double expected = pct / 100.0 * 100'000e3;
    EXPECT_NEAR(static_cast<double>(h.percentile_ns(pct)), expected, expected * 0.016 + 1000) << "p" << pct;
  }
  EXPECT_EQ(h.percentile_ns(100), 100'000'000u);
  EXPECT_EQ(h.percentile_ns(0), 1000u);
}

TEST(Histogram, SingleValuesAndEmptyAndOutOfRange) {
  LatencyHistogram empty;
  EXPECT_EQ(empty.percentile_ns(50), 0u);
  EXPECT_EQ(empty.min_ns(), 0u);
  EXPECT_EQ(empty.mean_ns(), 0.0);

  LatencyHistogram one;
  one.record(123'456);
  // Clamped to the observed range, so one value reports exactly itself.
  EXPECT_EQ(one.percentile_ns(50), 123'456u);
  EXPECT_EQ(one.percentile_ns(99.9), 123'456u);

  LatencyHistogram tails;
  tails.record(10);              // below 1 µs
  tails.record(60'000'000'000);  // 60 s, above the range
  EXPECT_EQ(tails.bucket_count(LatencyHistogram::kUnderflow), 1u);
  EXPECT_EQ(tails.bucket_count(LatencyHistogram::kOverflow), 1u);
  EXPECT_EQ(tails.percentile_ns(100), 60'000'000'000u);
  EXPECT_LE(tails.percentile_ns(50), 1000u);
}

TEST(Histogram, MergeEqualsRecordingIntoOne) {
  LatencyHistogram a, b, all;
  for (std::uint64_t i = 1; i < 5000; ++i) {
    std::uint64_t v = i * 7919 % 3'000'000 + 500;
    (i % 2 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min_ns(), all.min_ns());
  EXPECT_EQ(a.max_ns(), all.max_ns());
  for (double pct : {50.0, 90.0, 99.0, 99.9}) EXPECT_EQ(a.percentile_ns(pct), all.percentile_ns(pct));
  a.reset();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_EQ(a.percentile_ns(50), 0u);
}

TEST(PoissonSchedule, ExponentialGapsWithTheRequestedMean) {
  constexpr double kRate = 100'000;  // mean gap 10 µs
  constexpr int kN = 1'000'000;
  PoissonSchedule s(kRate, 42, 0);
  double sum = 0, sum_sq = 0;
  int above_mean = 0;
  for (int i = 0; i < kN; ++i) {
    double g = s.next_gap_ns();
    ASSERT_GE(g, 0.0);
    sum += g;
    sum_sq += g * g;
    if (g > 10'000.0) ++above_mean;
  }
  double mean = sum / kN;
  double var = sum_sq / kN - mean * mean;
  // With a fixed seed these are fixed numbers; the tolerances are ~5 standard errors, so any
  // correct exponential generator passes them, and a wrong distribution does not.
  EXPECT_NEAR(mean, 10'000.0, 10'000.0 * 0.005);
  EXPECT_NEAR(var / (mean * mean), 1.0, 0.02);                                // CV of an exponential is 1
  EXPECT_NEAR(static_cast<double>(above_mean) / kN, std::exp(-1.0), 0.0025);  // P(X > mean) = 1/e
}

TEST(PoissonSchedule, SendTimesAreMonotonicReproducibleAndKeepTheRate) {
  PoissonSchedule a(50'000, 7, 1'000'000'000), b(50'000, 7, 1'000'000'000), c(50'000, 8, 1'000'000'000);
  std::uint64_t prev = 1'000'000'000, last = 0;
  bool differs = false;
  constexpr int kN = 500'000;
  for (int i = 0; i < kN; ++i) {
    std::uint64_t ta = a.next();
    ASSERT_GE(ta, prev);
    ASSERT_EQ(ta, b.next());
    differs = differs || ta != c.next();
    prev = last = ta;
  }
  EXPECT_TRUE(differs) << "another seed must give another schedule";
  // 500k arrivals at 50k/s span 10 s; the sum of the gaps carries no rounding drift.
  double span_s = static_cast<double>(last - 1'000'000'000) / 1e9;
  EXPECT_NEAR(span_s, 10.0, 10.0 * 0.005);
}

TEST(IdList, ParsesListsAndRanges) {
  auto l = IdList::parse("1,3-5,0x10");
  ASSERT_TRUE(l.ok()) << l.message();
  EXPECT_EQ(l->size(), 5u);
  EXPECT_TRUE(l->contains(1));
  EXPECT_FALSE(l->contains(2));
  EXPECT_TRUE(l->contains(4));
  EXPECT_TRUE(l->contains(16));
  EXPECT_EQ(l->expand(), (std::vector<std::uint32_t>{1, 3, 4, 5, 16}));
  EXPECT_FALSE(IdList::parse("").ok());
  EXPECT_FALSE(IdList::parse("5-3").ok());
  EXPECT_FALSE(IdList::parse("1,,2").ok());
  EXPECT_FALSE(IdList::parse("-1").ok());
  EXPECT_FALSE(IdList::parse("4294967296").ok());
  EXPECT_FALSE(IdList::parse("0-4294967295").ok()) << "too many ids to expand";
}

TEST(Malformed, EachKindBreaksExactlyItsRule) {
  const std::pair<MalformedKind, p::Reason> cases[] = {
      {MalformedKind::bad_magic, p::Reason::bad_magic},
      {MalformedKind::bad_version, p::Reason::bad_version},
      {MalformedKind::lying_length, p::Reason::bad_length},
      {MalformedKind::bad_header_len, p::Reason::bad_header_len},
      {MalformedKind::truncated, p::Reason::axp_truncated},
      {MalformedKind::bad_type, p::Reason::bad_type},
      {MalformedKind::bad_priority, p::Reason::bad_priority},
      {MalformedKind::bad_segment, p::Reason::bad_segment},
      {MalformedKind::not_request, p::Reason::not_request},
  };
  static_assert(std::size(cases) == axon::loadgen::kMalformedKinds, "a kind without a test case");
  for (auto [kind, reason] : cases) {
    std::vector<std::uint8_t> buf(p::kHeaderLen + 32);
    std::size_t n = axon::loadgen::build_malformed(kind, buf, 32);
    ASSERT_GT(n, 0u) << to_string(kind);
    EXPECT_EQ(p::validate_request({buf.data(), n}), reason) << to_string(kind);
    EXPECT_EQ(axon::loadgen::malformed_kind_from_string(to_string(kind)), kind);
  }
}

}  // namespace
