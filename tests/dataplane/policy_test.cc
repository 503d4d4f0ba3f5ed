// RouteTable::admit: the tenant allowlist and GCRA rate limit the lcores enforce for backends
// without the XDP program (io_uring, DPDK). Same rules as bpf/axon_xdp.bpf.c.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

#include "axon/dataplane/credits.h"
#include "axon/dataplane/routing.h"

namespace axon::dataplane {
namespace {

using protocol::Reason;

DataplaneConfig config_with(bool allowlist, bool rate) {
  DataplaneConfig c;
  c.workers.push_back({"w"});
  c.xdp.enforce_allowlist = allowlist;
  c.xdp.enforce_rate = rate;
  TenantConfig t1;
  t1.id = 1;
  t1.prefixes = {"10.1.0.0/16", "2001:db8::/32", "192.0.2.7"};
  t1.rate_pps = 1000;  // one packet per ms
  t1.burst = 3;
  TenantConfig t2;
  t2.id = 2;  // no prefixes, no rate
  c.tenants = {t1, t2};
  return c;
}

axon_packet_info from(const char* address) {
  axon_packet_info info{};
  if (inet_pton(AF_INET, address, info.src_addr) == 1) {
    info.ip_version = 4;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, address, info.src_addr), 1) << address;
    info.ip_version = 6;
  }
  return info;
}

TEST(TenantPolicy, NothingIsEnforcedWithoutUserspacePolicy) {
  auto table = RouteTable::build(config_with(true, true), false);
  ASSERT_TRUE(table.ok()) << table.message();
  EXPECT_FALSE(table.value()->enforces_policy());
}

TEST(TenantPolicy, AllowlistMatchesPrefixesOfTheTenantOnly) {
  auto table = RouteTable::build(config_with(true, false), true);
  ASSERT_TRUE(table.ok()) << table.message();
  const RouteTable& t = *table.value();
  ASSERT_TRUE(t.enforces_policy());
  EXPECT_EQ(t.admit(1, from("10.1.200.3"), 0), Reason::ok);
  EXPECT_EQ(t.admit(1, from("10.2.0.1"), 0), Reason::prefix_denied);
  EXPECT_EQ(t.admit(1, from("192.0.2.7"), 0), Reason::ok);
  EXPECT_EQ(t.admit(1, from("192.0.2.8"), 0), Reason::prefix_denied);
  EXPECT_EQ(t.admit(1, from("2001:db8:ffff::1"), 0), Reason::ok);
  EXPECT_EQ(t.admit(1, from("2001:db9::1"), 0), Reason::prefix_denied);
  // An IPv4 prefix never matches an IPv6 source with the same leading bytes.
  EXPECT_EQ(t.admit(1, from("a01:c803::"), 0), Reason::prefix_denied);
  EXPECT_EQ(t.admit(2, from("10.1.200.3"), 0), Reason::prefix_denied) << "a tenant without prefixes allows none";
  EXPECT_EQ(t.admit(9, from("10.1.200.3"), 0), Reason::prefix_denied) << "an unknown tenant allows none";
}

TEST(TenantPolicy, RateLimitIsAGcraBucketWithTheConfiguredBurst) {
  auto table = RouteTable::build(config_with(false, true), true);
  ASSERT_TRUE(table.ok()) << table.message();
  const RouteTable& t = *table.value();
  const auto info = from("10.1.0.1");
  std::uint64_t now = 1'000'000'000;
  int admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += t.admit(1, info, now) == Reason::ok;
  EXPECT_EQ(admitted, 3) << "a burst of 3 at one instant";
  EXPECT_EQ(t.admit(1, info, now + 500'000), Reason::rate_limited) << "half an interval later: still empty";
  EXPECT_EQ(t.admit(1, info, now + 1'000'000), Reason::ok) << "one interval later: one more";
  EXPECT_EQ(t.admit(1, info, now + 1'000'000), Reason::rate_limited);
  int later = 0;
  for (int i = 0; i < 10; ++i) later += t.admit(1, info, now + 100'000'000) == Reason::ok;
  EXPECT_EQ(later, 3) << "after a long pause the bucket holds the burst again, not more";
  for (int i = 0; i < 100; ++i) EXPECT_EQ(t.admit(2, info, now), Reason::ok) << "no rate: unlimited";
}

axon_packet_info of_class(const char* address, protocol::Priority priority) {
  axon_packet_info info = from(address);
  info.has_class = 1;
  info.priority = std::uint8_t(priority);
  return info;
}

// Issue 13: a class limit holds its class alone, the all-classes limit (rate_pps) both together.
TEST(TenantPolicy, PerClassLimitsAndTheAllClassesLimit) {
  DataplaneConfig c = config_with(false, true);
  c.tenants[0].rate_pps = 1000;  // 1 ms per request over all classes, burst 4
  c.tenants[0].burst = 4;
  c.tenants[0].interactive_rate_pps = 1000;
  c.tenants[0].interactive_burst = 3;
  c.tenants[1].background_rate_pps = 1000;  // tenant 2: background only, no all-classes limit
  c.tenants[1].background_burst = 2;
  auto table = RouteTable::build(c, true);
  ASSERT_TRUE(table.ok()) << table.message();
  const RouteTable& t = *table.value();
  const std::uint64_t now = 1'000'000'000;
  const auto interactive = of_class("10.1.0.1", protocol::Priority::interactive);
  const auto background = of_class("10.1.0.1", protocol::Priority::background);
  int i_ok = 0, b_ok = 0;
  for (int i = 0; i < 5; ++i) i_ok += t.admit(1, interactive, now) == Reason::ok;
  for (int i = 0; i < 5; ++i) b_ok += t.admit(1, background, now) == Reason::ok;
  EXPECT_EQ(i_ok, 3) << "the interactive limit";
  EXPECT_EQ(b_ok, 1) << "what the all-classes burst of 4 leaves";
  int t2_background = 0;
  for (int i = 0; i < 5; ++i) t2_background += t.admit(2, background, now) == Reason::ok;
  EXPECT_EQ(t2_background, 2) << "tenant 2's background limit";
  for (int i = 0; i < 50; ++i) EXPECT_EQ(t.admit(2, interactive, now), Reason::ok) << "its interactive: unlimited";
}

// Issue 13: credits spent by admit() (uring, dpdk) as the XDP program spends them.
TEST(TenantPolicy, CreditsAreSpentThenBusyWithTheRefreshersRetryHint) {
  DataplaneConfig c = config_with(false, false);
  c.tenants[0].credits_max = 3;
  CreditSettings settings;
  settings.refresh_us = 4'000;
  CreditRefresher refresher(
      settings, [](std::size_t) { return WorkerLoad{}; }, nullptr, nullptr);
  refresher.configure(c.tenants, c.agents, c.workers, 0);
  auto table = RouteTable::build(c, true, &refresher);
  ASSERT_TRUE(table.ok()) << table.message();
  const RouteTable& t = *table.value();
  ASSERT_TRUE(t.enforces_policy());
  const auto info = of_class("10.1.0.1", protocol::Priority::interactive);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.admit(1, info, 0), Reason::ok) << i;
  std::uint32_t retry = 0;
  EXPECT_EQ(t.admit(1, info, 0, &retry), Reason::busy_no_credits);
  EXPECT_EQ(retry, 4'000u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(t.admit(2, info, 0), Reason::ok) << "tenant 2 has no credits: unlimited";
  refresher.tick(4'000'000);  // the refresh: 3 more
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.admit(1, info, 0), Reason::ok) << i;
  EXPECT_EQ(t.admit(1, info, 0), Reason::busy_no_credits);

  c.xdp.enforce_credits = false;  // [xdp] enforce_credits = false: not enforced at all
  auto off = RouteTable::build(c, true, &refresher);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off.value()->enforces_policy());
}

}  // namespace
}  // namespace axon::dataplane
