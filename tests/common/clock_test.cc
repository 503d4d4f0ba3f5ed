// The hop clock (axon::TscClock): its fixed-point conversion, its agreement with
// CLOCK_MONOTONIC after calibration (a bounded error, bracketed by two clock_gettime reads; no
// assertion on how fast anything is), and the fallback to clock_gettime when the TSC is refused.
#include "axon/common/clock.h"

#include <stdlib.h>
#include <time.h>

#include <cstdint>

#include "gtest/gtest.h"

namespace axon {
namespace {

TEST(TscClock, ConvertsWithMultAndShiftOnBothSidesOfTheBase) {
  TscClock c;
  c.tsc_base = 1'000'000;
  c.ns_base = 5'000'000'000ull;
  c.mult = 1u << 31;  // half a ns per tick
  c.shift = 32;
  EXPECT_TRUE(c.uses_tsc());
  EXPECT_EQ(c.to_ns(1'000'000), 5'000'000'000ull);
  EXPECT_EQ(c.to_ns(3'000'000), 5'001'000'000ull);
  EXPECT_EQ(c.to_ns(0), 4'999'500'000ull);  // a TSC read just below the base (another core)
  // 2^40 ticks: the product exceeds 64 bits before the shift and must not wrap.
  EXPECT_EQ(c.to_ns(c.tsc_base + (std::uint64_t{1} << 40)), c.ns_base + (std::uint64_t{1} << 39));
}

TEST(TscClock, UncalibratedReadsClockMonotonic) {
  const TscClock c;
  EXPECT_FALSE(c.uses_tsc());
  const std::uint64_t before = monotonic_ns();
  const std::uint64_t t = c.now_ns();
  const std::uint64_t after = monotonic_ns();
  EXPECT_LE(before, t);
  EXPECT_LE(t, after);
}

// After a 20 ms calibration the TSC clock stays within 20 us of CLOCK_MONOTONIC for the next
// 200 ms (the fit is good to a few ppm; a wrong mult, shift or base is off by milliseconds).
TEST(TscClock, CalibratedClockTracksClockMonotonic) {
  const char* why = nullptr;
  const TscClock c = calibrate_tsc(20, &why);
  if (!invariant_tsc()) {
    EXPECT_FALSE(c.uses_tsc());
    ASSERT_NE(why, nullptr);
    GTEST_SKIP() << "no invariant TSC here: " << why;
  }
  ASSERT_TRUE(c.uses_tsc()) << (why != nullptr ? why : "");
  constexpr std::int64_t kTolerance = 20'000;
  for (int i = 0; i < 20; ++i) {
    const std::uint64_t before = monotonic_ns();
    const std::uint64_t t = c.now_ns();
    const std::uint64_t after = monotonic_ns();
    EXPECT_GE(std::int64_t(t - before), -kTolerance) << "sample " << i;
    EXPECT_LE(std::int64_t(t - after), kTolerance) << "sample " << i;
    timespec pause{0, 10'000'000};
    nanosleep(&pause, nullptr);
  }
}

TEST(TscClock, EnvironmentForcesClockGettime) {
  ASSERT_EQ(setenv("AXON_HOP_CLOCK", "monotonic", 1), 0);
  const char* why = nullptr;
  const TscClock c = calibrate_tsc(1, &why);
  unsetenv("AXON_HOP_CLOCK");
  EXPECT_FALSE(c.uses_tsc());
  ASSERT_NE(why, nullptr);
  EXPECT_STREQ(why, "AXON_HOP_CLOCK=monotonic");
}

}  // namespace
}  // namespace axon
