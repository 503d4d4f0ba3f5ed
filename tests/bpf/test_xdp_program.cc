// The loader and the XDP policy paths that the case table cannot show with one frame each: the
// rate limit over a burst, allowlist changes, AF_XDP mode without sockets, the fragment option,
// config validation, and the layout of shared structs as the kernel's BTF records it.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>

#include "axon/bpf/xdp_program.h"
#include "axon/protocol/packet.h"

#include "packet_cases.h"

namespace axon::bpf {
namespace {

using protocol::Reason;

// Loads `config` into a new XdpProgram named `var`, failing the test (not crashing) on error.
#define LOAD_OR_FAIL(var, config)                           \
  auto var##_loaded = XdpProgram::load(config);             \
  ASSERT_TRUE(var##_loaded.ok()) << var##_loaded.message(); \
  XdpProgram var = std::move(var##_loaded).value()

class XdpProgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading XDP needs root (CAP_BPF + CAP_NET_ADMIN)";
  }

  // Runs one frame and returns (verdict, the reason whose counter moved).
  static std::pair<std::uint32_t, std::optional<Reason>> run(const XdpProgram& program,
                                                             const std::vector<std::uint8_t>& frame) {
    auto before = program.read_counters();
    auto result = program.test_run(frame);
    auto after = program.read_counters();
    EXPECT_TRUE(before.ok() && result.ok() && after.ok());
    if (!before.ok() || !result.ok() || !after.ok()) return {0, std::nullopt};
    std::optional<Reason> moved;
    for (std::size_t r = 0; r < kReasonCount; ++r)
      if (after->packets[r] != before->packets[r]) moved = static_cast<Reason>(r);
    return {result->action, moved};
  }
};

TEST_F(XdpProgramTest, RateLimitAllowsBurstThenDrops) {
  XdpConfig config;
  config.enforce_rate = true;
  config.deliver_to_kernel = true;
  LOAD_OR_FAIL(program, config);
  constexpr std::uint32_t kTenant = 7;
  constexpr std::uint32_t kBurst = 4;
  // 1 packet/s: nothing refills during the test, so exactly `burst` packets get through.
  ASSERT_TRUE(program.set_rate_limit(kTenant, 1, kBurst).ok());

  test::FrameSpec spec;
  spec.axp.tenant_id = kTenant;
  auto frame = test::build_frame(spec);
  for (std::uint32_t i = 0; i < kBurst; ++i) {
    auto [action, reason] = run(program, frame);
    EXPECT_EQ(action, test::kXdpPass) << "packet " << i << " of the burst";
    EXPECT_EQ(reason, Reason::ok) << "packet " << i << " of the burst";
  }
  auto [action, reason] = run(program, frame);
  EXPECT_EQ(action, test::kXdpDrop);
  EXPECT_EQ(reason, Reason::rate_limited);

  // Other tenants have no limit; clearing the limit lifts it; setting it again refills.
  test::FrameSpec other = spec;
  other.axp.tenant_id = kTenant + 1;
  EXPECT_EQ(run(program, test::build_frame(other)).second, Reason::ok);
  ASSERT_TRUE(program.clear_rate_limit(kTenant).ok());
  EXPECT_EQ(run(program, frame).second, Reason::ok);
  ASSERT_TRUE(program.set_rate_limit(kTenant, 1, 1).ok());
  EXPECT_EQ(run(program, frame).second, Reason::ok);
  EXPECT_EQ(run(program, frame).second, Reason::rate_limited);

  auto counters = program.read_counters();
  ASSERT_TRUE(counters.ok());
  EXPECT_EQ(counters->packets_for(AXON_DROP_RATE_LIMITED), 2u);
  EXPECT_EQ(counters->packets_for(AXON_OK), kBurst + 3);
}

TEST_F(XdpProgramTest, RateLimitRefillsOverTime) {
  XdpConfig config;
  config.enforce_rate = true;
  config.deliver_to_kernel = true;
  LOAD_OR_FAIL(program, config);
  ASSERT_TRUE(program.set_rate_limit(3, 10, 1).ok());  // one packet per 100 ms: immune to scheduling noise
  test::FrameSpec spec;
  spec.axp.tenant_id = 3;
  auto frame = test::build_frame(spec);
  EXPECT_EQ(run(program, frame).second, Reason::ok);
  EXPECT_EQ(run(program, frame).second, Reason::rate_limited);
  usleep(150'000);
  EXPECT_EQ(run(program, frame).second, Reason::ok);
}

TEST_F(XdpProgramTest, AllowlistChangesTakeEffectImmediately) {
  XdpConfig config;
  config.enforce_allowlist = true;
  config.deliver_to_kernel = true;
  LOAD_OR_FAIL(program, config);
  test::FrameSpec spec;
  spec.src = "172.16.5.9";
  auto frame = test::build_frame(spec);
  EXPECT_EQ(run(program, frame).second, Reason::prefix_denied);

  auto host_route = IpPrefix::parse("172.16.5.9");
  ASSERT_TRUE(host_route.ok());
  ASSERT_TRUE(program.allow_prefix(test::kAllowedTenant, *host_route).ok());
  EXPECT_EQ(run(program, frame).second, Reason::ok);

  // The rule names one tenant: another tenant from the same address stays out.
  test::FrameSpec other = spec;
  other.axp.tenant_id = 2;
  EXPECT_EQ(run(program, test::build_frame(other)).second, Reason::prefix_denied);

  ASSERT_TRUE(program.remove_prefix(test::kAllowedTenant, *host_route).ok());
  EXPECT_EQ(run(program, frame).second, Reason::prefix_denied);
  EXPECT_TRUE(program.remove_prefix(test::kAllowedTenant, *host_route).ok()) << "removing twice is not an error";
}

TEST_F(XdpProgramTest, Ipv6AllowAllPrefix) {
  XdpConfig config;
  config.enforce_allowlist = true;
  config.deliver_to_kernel = true;
  LOAD_OR_FAIL(program, config);
  ASSERT_TRUE(program.allow_prefix(5, IpPrefix::parse("::/0").value()).ok());
  test::FrameSpec spec;
  spec.ip_version = 6;
  spec.src = "fd00::1";
  spec.dst = "fd00::2";
  spec.axp.tenant_id = 5;
  EXPECT_EQ(run(program, test::build_frame(spec)).second, Reason::ok);
  spec.axp.tenant_id = 6;
  EXPECT_EQ(run(program, test::build_frame(spec)).second, Reason::prefix_denied);
}

TEST_F(XdpProgramTest, PolicyOffAcceptsAnySource) {
  XdpConfig config;
  config.deliver_to_kernel = true;
  LOAD_OR_FAIL(program, config);
  test::FrameSpec spec;
  spec.src = "192.168.1.1";
  spec.axp.tenant_id = test::kUnknownTenant;
  EXPECT_EQ(run(program, test::build_frame(spec)), std::make_pair(test::kXdpPass, std::optional(Reason::ok)));
}

TEST_F(XdpProgramTest, AfXdpModeWithoutSocketDropsAndCountsNoSocket) {
  XdpConfig config;  // defaults: AF_XDP delivery, no sockets registered
  LOAD_OR_FAIL(program, config);
  test::FrameSpec spec;
  auto [action, reason] = run(program, test::build_frame(spec));
  // bpf_redirect_map() finds no socket at rx_queue_index 0 and returns its fallback, XDP_DROP.
  EXPECT_EQ(action, test::kXdpDrop);
  EXPECT_EQ(reason, Reason::no_socket);

  // Malformed and foreign traffic behave as in every other mode.
  test::FrameSpec bad = spec;
  bad.mutate_datagram = [](std::vector<std::uint8_t>& d) { d[0] = 0; };
  EXPECT_EQ(run(program, test::build_frame(bad)), std::make_pair(test::kXdpDrop, std::optional(Reason::bad_magic)));
  test::FrameSpec dns = spec;
  dns.dst_port = 53;
  EXPECT_EQ(run(program, test::build_frame(dns)), std::make_pair(test::kXdpPass, std::optional(Reason::pass_not_axp)));
}

TEST_F(XdpProgramTest, DropAllFragmentsOption) {
  XdpConfig config;
  config.drop_all_fragments = true;
  config.deliver_to_kernel = true;
  LOAD_OR_FAIL(program, config);
  test::FrameSpec later;
  later.ipv4_frag_off = 0x0010;
  EXPECT_EQ(run(program, test::build_frame(later)).second, Reason::ip_fragment);
  test::FrameSpec tcp;
  tcp.ip_protocol = 6;
  tcp.ipv4_frag_off = 0x2000;
  EXPECT_EQ(run(program, test::build_frame(tcp)).second, Reason::ip_fragment);
  test::FrameSpec whole;
  EXPECT_EQ(run(program, test::build_frame(whole)).second, Reason::ok);
}

TEST_F(XdpProgramTest, LoadRejectsUnusableConfig) {
  XdpConfig no_ports;
  no_ports.ports = {0, 0, 0, 0};
  auto a = XdpProgram::load(no_ports);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.code(), XdpError::invalid_argument);
  EXPECT_NE(a.message().find("7400"), std::string::npos) << a.message();

  XdpConfig no_queues;
  no_queues.max_queues = 0;
  auto b = XdpProgram::load(no_queues);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.code(), XdpError::invalid_argument);
}

TEST_F(XdpProgramTest, TableUpdatesRejectBadArguments) {
  XdpConfig config;
  config.max_queues = 4;
  LOAD_OR_FAIL(program, config);
  EXPECT_EQ(program.set_rate_limit(1, 0, 10).code(), XdpError::invalid_argument);
  EXPECT_EQ(program.set_rate_limit(1, 10, 0).code(), XdpError::invalid_argument);
  EXPECT_EQ(program.set_socket(4, 0).code(), XdpError::invalid_argument);
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, fds), 0);
  auto not_xsk = program.set_socket(0, fds[0]);
  EXPECT_EQ(not_xsk.code(), XdpError::map_update_failed);
  EXPECT_NE(not_xsk.message().find("AF_XDP socket"), std::string::npos) << not_xsk.message();
  close(fds[0]);
  close(fds[1]);
  EXPECT_EQ(program.allow_prefix(1, IpPrefix{}).code(), XdpError::invalid_argument);
  EXPECT_TRUE(program.clear_socket(2).ok());
}

TEST_F(XdpProgramTest, TestRunExplainsShortFrames) {
  LOAD_OR_FAIL(program, XdpConfig{});
  std::vector<std::uint8_t> tiny(10, 0);
  auto result = program.test_run(tiny);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.message().find("14 bytes"), std::string::npos) << result.message();
}

TEST_F(XdpProgramTest, MovedProgramKeepsWorking) {
  LOAD_OR_FAIL(first, XdpConfig{});
  std::uint32_t id = first.program_id();
  EXPECT_NE(id, 0u);
  XdpProgram second = std::move(first);
  EXPECT_EQ(second.program_id(), id);
  EXPECT_EQ(first.program_id(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is defined as empty
  LOAD_OR_FAIL(third, XdpConfig{});
  third = std::move(second);
  EXPECT_EQ(third.program_id(), id);
  EXPECT_TRUE(third.test_run(test::build_frame(test::FrameSpec{})).ok());
}

// Map keys and values are declared once (axon_xdp.shared.h) but compiled twice, by clang for
// BPF and by g++ here. The kernel's BTF of the loaded program records clang's layout.
TEST_F(XdpProgramTest, SharedStructLayoutMatchesKernelBtf) {
  LOAD_OR_FAIL(program, XdpConfig{});
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(program.program_fd(), &info, &len), 0);
  ASSERT_NE(info.btf_id, 0u) << "the program was loaded without BTF";
  btf* kernel_btf = btf__load_from_kernel_by_id(info.btf_id);
  ASSERT_NE(kernel_btf, nullptr);
  auto size_of = [&](const char* name, int kind) -> long long {
    int id = btf__find_by_name_kind(kernel_btf, name, kind);
    return id < 0 ? -1 : btf__resolve_size(kernel_btf, static_cast<__u32>(id));
  };
  EXPECT_EQ(size_of("axon_config", BTF_KIND_STRUCT), static_cast<long long>(sizeof(axon_config)));
  EXPECT_EQ(size_of("axon_counter", BTF_KIND_STRUCT), static_cast<long long>(sizeof(axon_counter)));
  EXPECT_EQ(size_of("axon_allow_v4_key", BTF_KIND_STRUCT), static_cast<long long>(sizeof(axon_allow_v4_key)));
  EXPECT_EQ(size_of("axon_allow_v6_key", BTF_KIND_STRUCT), static_cast<long long>(sizeof(axon_allow_v6_key)));
  EXPECT_EQ(size_of("axon_rate", BTF_KIND_STRUCT), static_cast<long long>(sizeof(axon_rate)));
  btf__free(kernel_btf);
}

// The shared strict parse (axon/common/model.h): host bits beyond the prefix are refused, not
// silently cleared ("10.1.2.3/8" is a typo for 10.0.0.0/8 or 10.1.2.3/32).
TEST(IpPrefix, ParsesStrictlyThroughTheSharedModel) {
  auto v4 = IpPrefix::parse("10.0.0.0/8");
  ASSERT_TRUE(v4.ok()) << v4.message();
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(v4->length, 8);
  EXPECT_EQ(v4->to_string(), "10.0.0.0/8");
  auto sloppy = IpPrefix::parse("10.1.2.3/8");
  ASSERT_FALSE(sloppy.ok());
  EXPECT_EQ(sloppy.code(), XdpError::invalid_argument);

  auto host = IpPrefix::parse("192.168.1.7");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->length, 32);

  auto v6 = IpPrefix::parse("2001:db8:8000::/33");
  ASSERT_TRUE(v6.ok()) << v6.message();
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(v6->to_string(), "2001:db8:8000::/33");
  EXPECT_FALSE(IpPrefix::parse("2001:db8:ffff::1/33").ok());

  EXPECT_EQ(IpPrefix::parse("10.0.0.0/33").code(), XdpError::invalid_argument);
  EXPECT_EQ(IpPrefix::parse("10.0.0.0/x").code(), XdpError::invalid_argument);
  EXPECT_EQ(IpPrefix::parse("not-an-address").code(), XdpError::invalid_argument);
  EXPECT_EQ(IpPrefix::parse("::/129").code(), XdpError::invalid_argument);
}

}  // namespace
}  // namespace axon::bpf
