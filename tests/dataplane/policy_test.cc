// RouteTable::admit: the tenant allowlist and GCRA rate limit the lcores enforce for backends
// without the XDP program (io_uring, DPDK). Same rules as bpf/axon_xdp.bpf.c.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

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

}  // namespace
}  // namespace axon::dataplane
