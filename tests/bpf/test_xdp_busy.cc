// Issue 13 in the XDP front door, under BPF_PROG_TEST_RUN: per-class counters, per-class rate
// limits, and credits answered BUSY by the program itself (XDP_TX) with the frame rewritten in
// place. The BUSY frame is checked field by field against docs/protocol.md §2/§3/§5 with
// checksums recomputed here, independently of the program and of the data plane, and then byte
// for byte against what the data plane's own make_busy_reply + build_reply_frame produce.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "axon/bpf/xdp_program.h"
#include "axon/protocol/axp.h"
#include "axon/protocol/packet.h"

#include "packet_cases.h"
#include "reply_builder.h"

namespace axon::bpf {
namespace {

constexpr std::uint32_t kXdpTx = 3;

#define LOAD_OR_FAIL(var, config)                           \
  auto var##_loaded = XdpProgram::load(config);             \
  ASSERT_TRUE(var##_loaded.ok()) << var##_loaded.message(); \
  XdpProgram var = std::move(var##_loaded).value()

class XdpBusyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading XDP needs root (CAP_BPF + CAP_NET_ADMIN)";
  }
  static XdpConfig config(bool rate, bool credits) {
    XdpConfig c;
    c.enforce_rate = rate;
    c.enforce_credits = credits;
    c.deliver_to_kernel = true;  // admitted requests show as XDP_PASS
    return c;
  }
};

test::FrameSpec spec_of(protocol::Priority priority, std::uint32_t tenant = 5) {
  test::FrameSpec spec;
  spec.axp.priority = priority;
  spec.axp.tenant_id = tenant;
  return spec;
}

std::uint64_t class_delta(const XdpCounters& after, const XdpCounters& before, axp_priority klass, axon_reason reason) {
  return after.packets_for(klass, reason) - before.packets_for(klass, reason);
}

TEST_F(XdpBusyTest, EachClassIsCountedSeparately) {
  LOAD_OR_FAIL(program, config(false, false));
  auto before = program.read_counters();
  ASSERT_TRUE(before.ok()) << before.message();
  const auto interactive = test::build_frame(spec_of(protocol::Priority::interactive));
  const auto background = test::build_frame(spec_of(protocol::Priority::background));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(program.test_run(interactive)->action, test::kXdpPass);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(program.test_run(background)->action, test::kXdpPass);
  // A request the appliance refuses (not a REQUEST) has a class: counted under it, as a drop.
  test::FrameSpec response = spec_of(protocol::Priority::background);
  response.axp.type = protocol::MessageType::response;
  ASSERT_EQ(program.test_run(test::build_frame(response))->action, test::kXdpDrop);
  // A frame dropped before its AXP header validated has no class: counted only in the totals.
  test::FrameSpec bad = spec_of(protocol::Priority::interactive);
  bad.mutate_datagram = [](std::vector<std::uint8_t>& d) { d[0] ^= 0xff; };
  ASSERT_EQ(program.test_run(test::build_frame(bad))->action, test::kXdpDrop);

  auto after = program.read_counters();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(class_delta(*after, *before, AXP_PRIO_INTERACTIVE, AXON_OK), 3u);
  EXPECT_EQ(class_delta(*after, *before, AXP_PRIO_BACKGROUND, AXON_OK), 5u);
  EXPECT_EQ(class_delta(*after, *before, AXP_PRIO_BACKGROUND, AXON_DROP_AXP_NOT_REQUEST), 1u);
  EXPECT_EQ(class_delta(*after, *before, AXP_PRIO_INTERACTIVE, AXON_DROP_AXP_NOT_REQUEST), 0u);
  EXPECT_EQ(after->packets_for(AXON_DROP_AXP_BAD_MAGIC) - before->packets_for(AXON_DROP_AXP_BAD_MAGIC), 1u);
  for (auto klass : {AXP_PRIO_INTERACTIVE, AXP_PRIO_BACKGROUND}) {
    EXPECT_EQ(class_delta(*after, *before, klass, AXON_DROP_AXP_BAD_MAGIC), 0u);
  }
  EXPECT_EQ(after->class_bytes[AXP_PRIO_INTERACTIVE][AXON_OK] - before->class_bytes[AXP_PRIO_INTERACTIVE][AXON_OK],
            3 * interactive.size());
}

// A class limit holds its class alone; the all-classes limit holds both together.
TEST_F(XdpBusyTest, PerClassRateLimitsAndTheAllClassesLimit) {
  LOAD_OR_FAIL(program, config(true, false));
  constexpr std::uint32_t kTenant = 5;
  // 1 packet/s: nothing refills during the test, so each bucket admits exactly its burst.
  ASSERT_TRUE(program.set_rate_limit(kTenant, 1, 2, RateScope::background).ok());
  const auto interactive = test::build_frame(spec_of(protocol::Priority::interactive, kTenant));
  const auto background = test::build_frame(spec_of(protocol::Priority::background, kTenant));
  auto before = program.read_counters();
  EXPECT_EQ(program.test_run(background)->action, test::kXdpPass);
  EXPECT_EQ(program.test_run(background)->action, test::kXdpPass);
  EXPECT_EQ(program.test_run(background)->action, test::kXdpDrop) << "background burst of 2 spent";
  for (int i = 0; i < 10; ++i) EXPECT_EQ(program.test_run(interactive)->action, test::kXdpPass) << i;
  auto after = program.read_counters();
  EXPECT_EQ(class_delta(*after, *before, AXP_PRIO_BACKGROUND, AXON_DROP_RATE_LIMITED), 1u);
  EXPECT_EQ(class_delta(*after, *before, AXP_PRIO_INTERACTIVE, AXON_DROP_RATE_LIMITED), 0u);

  // Interactive limited to 3, background to 100, all classes to 4 (setting refills a bucket):
  // interactive gets its 3, and the all-classes limit leaves background one.
  ASSERT_TRUE(program.set_rate_limit(kTenant, 1, 3, RateScope::interactive).ok());
  ASSERT_TRUE(program.set_rate_limit(kTenant, 1, 100, RateScope::background).ok());
  ASSERT_TRUE(program.set_rate_limit(kTenant, 1, 4, RateScope::all).ok());
  int interactive_ok = 0, background_ok = 0;
  for (int i = 0; i < 5; ++i) interactive_ok += program.test_run(interactive)->action == test::kXdpPass;
  for (int i = 0; i < 5; ++i) background_ok += program.test_run(background)->action == test::kXdpPass;
  EXPECT_EQ(interactive_ok, 3) << "the interactive class limit";
  EXPECT_EQ(background_ok, 1) << "what the all-classes limit of 4 leaves after 3 interactive";

  // Clearing one scope leaves the others.
  ASSERT_TRUE(program.clear_rate_limit(kTenant, RateScope::all).ok());
  EXPECT_EQ(program.test_run(interactive)->action, test::kXdpDrop) << "the interactive limit stays";
  EXPECT_EQ(program.test_run(background)->action, test::kXdpPass) << "background has most of its 100 left";
}

TEST_F(XdpBusyTest, CreditsAreSpentThenBusyAndARefreshLetsRequestsThrough) {
  LOAD_OR_FAIL(program, config(false, true));
  constexpr std::uint32_t kTenant = 5;
  const auto frame = test::build_frame(spec_of(protocol::Priority::background, kTenant));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(program.test_run(frame)->action, test::kXdpPass) << "no credits set: unlimited";
  ASSERT_TRUE(program.set_credits(kTenant, 3, 777).ok());
  auto before = program.read_counters();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(program.test_run(frame)->action, test::kXdpPass) << i;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(program.test_run(frame)->action, kXdpTx) << i;
  auto left = program.read_credits(kTenant);
  ASSERT_TRUE(left.ok() && left->has_value());
  EXPECT_LE(**left, 0);
  auto after = program.read_counters();
  EXPECT_EQ(after->packets_for(AXON_BUSY_NO_CREDITS) - before->packets_for(AXON_BUSY_NO_CREDITS), 4u);
  EXPECT_EQ(class_delta(*after, *before, AXP_PRIO_BACKGROUND, AXON_BUSY_NO_CREDITS), 4u);
  EXPECT_EQ(class_delta(*after, *before, AXP_PRIO_BACKGROUND, AXON_OK), 3u);

  test::FrameSpec other = spec_of(protocol::Priority::background, kTenant + 1);
  EXPECT_EQ(program.test_run(test::build_frame(other))->action, test::kXdpPass) << "other tenants are not charged";
  ASSERT_TRUE(program.set_credits(kTenant, 1, 777).ok());  // a refresh replaces, it does not add
  EXPECT_EQ(program.test_run(frame)->action, test::kXdpPass);
  EXPECT_EQ(program.test_run(frame)->action, kXdpTx);
  ASSERT_TRUE(program.clear_credits(kTenant).ok());
  EXPECT_EQ(program.test_run(frame)->action, test::kXdpPass) << "credits off: unlimited again";
  auto none = program.read_credits(kTenant);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(XdpBusyTest, CreditsAreNotEnforcedWhenTheFeatureIsOff) {
  LOAD_OR_FAIL(program, config(false, false));
  ASSERT_TRUE(program.set_credits(5, 0, 777).ok());
  EXPECT_EQ(program.test_run(test::build_frame(spec_of(protocol::Priority::interactive)))->action, test::kXdpPass);
}

// A rate-limited request is dropped before it can spend a credit (rate first, then credits).
TEST_F(XdpBusyTest, RateLimitedRequestsStayASilentDropAndSpendNoCredit) {
  LOAD_OR_FAIL(program, config(true, true));
  ASSERT_TRUE(program.set_rate_limit(5, 1, 1, RateScope::interactive).ok());
  ASSERT_TRUE(program.set_credits(5, 10, 777).ok());
  const auto frame = test::build_frame(spec_of(protocol::Priority::interactive));
  EXPECT_EQ(program.test_run(frame)->action, test::kXdpPass);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(program.test_run(frame)->action, test::kXdpDrop);
  EXPECT_EQ(**program.read_credits(5), 9);
}

// --- the BUSY frame, byte by byte -----------------------------------------------------------

std::uint16_t be16(const std::uint8_t* p) {
  return std::uint16_t(p[0] << 8 | p[1]);
}
std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t(be16(p)) << 16 | be16(p + 2);
}

// RFC 1071, written out here on purpose: the program and the data plane have their own.
std::uint16_t internet_checksum(const std::vector<std::uint8_t>& bytes) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < bytes.size(); i += 2) {
    sum += std::uint32_t(bytes[i]) << 8 | (i + 1 < bytes.size() ? bytes[i + 1] : 0);
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return std::uint16_t(~sum);
}

struct BusyCase {
  std::string name;
  test::FrameSpec spec;
};

std::vector<BusyCase> busy_cases() {
  std::vector<BusyCase> cases;
  cases.push_back({"ipv4", spec_of(protocol::Priority::background)});
  test::FrameSpec v6 = spec_of(protocol::Priority::interactive);
  v6.ip_version = 6;
  v6.src = "2001:db8::7";
  v6.dst = "2001:db8::1";
  cases.push_back({"ipv6", v6});
  test::FrameSpec vlan = spec_of(protocol::Priority::interactive);
  vlan.vlan_tpids = {0x88a8, 0x8100};
  cases.push_back({"ipv4 two vlan tags", vlan});
  test::FrameSpec v6vlan = v6;
  v6vlan.vlan_tpids = {0x8100};
  cases.push_back({"ipv6 one vlan tag", v6vlan});
  test::FrameSpec options = spec_of(protocol::Priority::background);
  options.ipv4_ihl = 7;  // 8 bytes of IPv4 options: the reply has none, and is shorter for it
  cases.push_back({"ipv4 options", options});
  test::FrameSpec untraced = spec_of(protocol::Priority::background);
  untraced.axp.trace_id = {};
  untraced.axp.span_id = {};
  untraced.payload.clear();  // the shortest request: the reply is as long, never longer
  cases.push_back({"no trace, no payload", untraced});
  test::FrameSpec half = spec_of(protocol::Priority::interactive);
  half.axp.span_id = {};  // trace id without a parent span: the reply's span stays zero (§5)
  half.payload.assign(1200, 0x5a);
  cases.push_back({"trace id without span, large payload", half});
  test::FrameSpec padded = spec_of(protocol::Priority::interactive);
  padded.trailing_bytes = 6;  // Ethernet padding after the IP datagram is cut with the rest
  cases.push_back({"trailing bytes", padded});
  return cases;
}

TEST_F(XdpBusyTest, BusyFrameIsTheProtocolsBusyReplyByteForByte) {
  LOAD_OR_FAIL(program, config(false, true));
  constexpr std::uint32_t kRetryUs = 12'345;
  for (const BusyCase& c : busy_cases()) {
    SCOPED_TRACE(c.name);
    const protocol::Header& request = c.spec.axp;
    ASSERT_TRUE(program.set_credits(request.tenant_id, 0, kRetryUs).ok());
    const std::vector<std::uint8_t> in = test::build_frame(c.spec);
    auto run = program.test_run(in);
    ASSERT_TRUE(run.ok()) << run.message();
    ASSERT_EQ(run->action, kXdpTx);
    const std::vector<std::uint8_t>& out = run->frame;

    // Layout: the request's L2 (MACs swapped), a fresh IP header, UDP, an 80-byte AXP header.
    const std::size_t l2 = 14 + 4 * c.spec.vlan_tpids.size();
    const std::size_t ip_len = c.spec.ip_version == 6 ? 40 : 20;
    const std::size_t udp_len = 8 + protocol::kHeaderLen;
    ASSERT_EQ(out.size(), l2 + ip_len + udp_len);
    EXPECT_LE(out.size(), in.size()) << "never an amplifier";
    EXPECT_TRUE(std::equal(in.begin(), in.begin() + 6, out.begin() + 6)) << "source MAC = request's destination";
    EXPECT_TRUE(std::equal(in.begin() + 6, in.begin() + 12, out.begin())) << "destination MAC = request's source";
    EXPECT_TRUE(std::equal(in.begin() + 12, in.begin() + long(l2), out.begin() + 12)) << "VLAN tags and type kept";

    const std::uint8_t* ip = out.data() + l2;
    const std::uint8_t* in_ip = in.data() + l2;
    std::vector<std::uint8_t> pseudo;
    if (c.spec.ip_version == 4) {
      EXPECT_EQ(ip[0], 0x45);
      EXPECT_EQ(be16(ip + 2), ip_len + udp_len);
      EXPECT_EQ(be16(ip + 6), 0x4000) << "DF, no fragment";
      EXPECT_EQ(ip[8], 64);
      EXPECT_EQ(ip[9], 17);
      const std::size_t in_ihl = std::size_t(in_ip[0] & 0x0f) * 4;
      EXPECT_EQ(0, std::memcmp(ip + 12, in_ip + 16, 4)) << "source = request's destination";
      EXPECT_EQ(0, std::memcmp(ip + 16, in_ip + 12, 4));
      EXPECT_EQ(internet_checksum(std::vector<std::uint8_t>(ip, ip + 20)), 0) << "IPv4 header checksum";
      pseudo.assign(ip + 12, ip + 20);
      EXPECT_EQ(be16(ip + 20), be16(in_ip + in_ihl + 2)) << "source port = request's destination port";
      EXPECT_EQ(be16(ip + 22), be16(in_ip + in_ihl)) << "destination port = request's source port";
    } else {
      EXPECT_EQ(be32(ip), 0x60000000u);
      EXPECT_EQ(be16(ip + 4), udp_len);
      EXPECT_EQ(ip[6], 17);
      EXPECT_EQ(ip[7], 64);
      EXPECT_EQ(0, std::memcmp(ip + 8, in_ip + 24, 16));
      EXPECT_EQ(0, std::memcmp(ip + 24, in_ip + 8, 16));
      pseudo.assign(ip + 8, ip + 40);
      EXPECT_EQ(be16(ip + 40), be16(in_ip + 42));
      EXPECT_EQ(be16(ip + 42), be16(in_ip + 40));
    }
    const std::uint8_t* udp = ip + ip_len;
    EXPECT_EQ(be16(udp + 4), udp_len);
    EXPECT_NE(be16(udp + 6), 0) << "a UDP checksum is always present (mandatory on IPv6)";
    // The checksum over pseudo header + UDP header + AXP header sums to zero when correct.
    pseudo.insert(pseudo.end(), {0, 17, std::uint8_t(udp_len >> 8), std::uint8_t(udp_len)});
    pseudo.insert(pseudo.end(), udp, udp + udp_len);
    EXPECT_EQ(internet_checksum(pseudo), 0) << "UDP checksum";

    std::span<const std::uint8_t> datagram(udp + 8, protocol::kHeaderLen);
    EXPECT_EQ(protocol::validate(datagram), protocol::Reason::ok) << "the reply is a valid AXP message";
    const protocol::Header reply = protocol::decode_header(datagram);
    EXPECT_EQ(reply.type, protocol::MessageType::busy);
    EXPECT_EQ(reply.priority, request.priority);
    EXPECT_EQ(reply.trace_flags, request.trace_flags);
    EXPECT_EQ(reply.header_len, protocol::kHeaderLen);
    EXPECT_EQ(reply.payload_len, 0);
    EXPECT_EQ(reply.segment_index, 0);
    EXPECT_EQ(reply.segment_count, 1);
    EXPECT_EQ(reply.message_len, 0u);
    EXPECT_EQ(reply.tenant_id, request.tenant_id);
    EXPECT_EQ(reply.agent_id, request.agent_id);
    EXPECT_EQ(reply.session_key, request.session_key);
    EXPECT_EQ(reply.request_id, request.request_id);
    EXPECT_EQ(reply.trace_id, request.trace_id);
    EXPECT_EQ(reply.deadline_us, 0u);
    EXPECT_EQ(reply.error_code, protocol::ErrorCode::none);
    EXPECT_EQ(reply.retry_after_us, kRetryUs);
    if (protocol::has_trace_context(request)) {
      EXPECT_NE(reply.span_id, protocol::SpanId{}) << "a new child span";
      EXPECT_NE(reply.span_id, request.span_id);
    } else {
      EXPECT_EQ(reply.span_id, protocol::SpanId{}) << "no trace context: zero span";
    }

    // What the data plane would send for the same request, with the program's span id.
    protocol::PacketParser parser{protocol::PacketConfig{}};
    const protocol::ParsedFrame parsed = parser.parse(in);
    ASSERT_TRUE(parsed.ok());
    dataplane::ReplyContext ctx;
    ASSERT_TRUE(dataplane::capture_context(in, parsed, request, 0, ctx));
    std::vector<std::uint8_t> expected(in.size());
    const std::uint32_t n =
        dataplane::build_reply_frame(ctx, protocol::make_busy_reply(request, kRetryUs, reply.span_id), {}, expected);
    expected.resize(n);
    EXPECT_EQ(out, expected) << "byte-identical to make_busy_reply + build_reply_frame";
  }
}

// The new map keys and values are compiled twice (clang for BPF, g++ here); the loaded
// program's BTF records clang's layout.
TEST_F(XdpBusyTest, NewSharedStructsMatchTheKernelsBtf) {
  LOAD_OR_FAIL(program, config(true, true));
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(program.program_fd(), &info, &len), 0);
  btf* kernel_btf = btf__load_from_kernel_by_id(info.btf_id);
  ASSERT_NE(kernel_btf, nullptr);
  auto size_of = [&](const char* name) -> long long {
    int id = btf__find_by_name_kind(kernel_btf, name, BTF_KIND_STRUCT);
    return id < 0 ? -1 : btf__resolve_size(kernel_btf, static_cast<__u32>(id));
  };
  EXPECT_EQ(size_of("axon_rate_key"), static_cast<long long>(sizeof(axon_rate_key)));
  EXPECT_EQ(size_of("axon_credit"), static_cast<long long>(sizeof(axon_credit)));
  btf__free(kernel_btf);
}

TEST_F(XdpBusyTest, SpanIdsAreFreshForEachBusy) {
  LOAD_OR_FAIL(program, config(false, true));
  ASSERT_TRUE(program.set_credits(5, 0, 1).ok());
  const auto in = test::build_frame(spec_of(protocol::Priority::interactive));
  auto first = program.test_run(in);
  auto second = program.test_run(in);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_EQ(first->frame.size(), second->frame.size());
  const std::size_t span_at = first->frame.size() - protocol::kHeaderLen + 56;
  EXPECT_NE(
      std::vector<std::uint8_t>(first->frame.begin() + long(span_at), first->frame.begin() + long(span_at) + 8),
      std::vector<std::uint8_t>(second->frame.begin() + long(span_at), second->frame.begin() + long(span_at) + 8));
}

}  // namespace
}  // namespace axon::bpf
