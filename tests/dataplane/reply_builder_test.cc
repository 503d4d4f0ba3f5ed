// The reply frame builder: a reply goes back the way its request came. MACs, addresses and
// ports swapped, VLAN tags kept byte for byte, and IPv4 header and UDP checksums that verify
// when recomputed here independently (RFC 1071 over the IPv4 header, and over the UDP
// pseudo-header + segment for both IPv4 and IPv6).
#include "reply_builder.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace axon::dataplane {
namespace {

using protocol::Header;
using protocol::MessageType;
using protocol::Reason;

constexpr std::uint8_t kClientMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
constexpr std::uint8_t kServerMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr std::uint16_t kClientPort = 41234;

std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += std::uint32_t(p[i]) << 8 | p[i + 1];
  if (n % 2 != 0) sum += std::uint32_t(p[n - 1]) << 8;
  return sum;
}

std::uint16_t fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return std::uint16_t(sum);
}

std::uint16_t get16(const std::uint8_t* p) {
  return std::uint16_t(p[0] << 8 | p[1]);
}

void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = std::uint8_t(v >> 8);
  p[1] = std::uint8_t(v);
}

struct FrameShape {
  int ip_version = 4;
  std::vector<std::pair<std::uint16_t, std::uint16_t>> tags;  // (TPID, TCI), outermost first
};

// A request frame client -> server, with correct lengths (checksums do not matter to the parser).
std::vector<std::uint8_t> request_frame(const FrameShape& shape, const Header& header,
                                        const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> datagram(protocol::kHeaderLen + payload.size());
  datagram.resize(protocol::encode_datagram(header, payload, datagram));
  std::vector<std::uint8_t> f(12);
  std::memcpy(f.data(), kServerMac, 6);
  std::memcpy(f.data() + 6, kClientMac, 6);
  for (auto [tpid, tci] : shape.tags) {
    f.resize(f.size() + 4);
    put16(&f[f.size() - 4], tpid);
    put16(&f[f.size() - 2], tci);
  }
  f.resize(f.size() + 2);
  put16(&f[f.size() - 2], shape.ip_version == 6 ? 0x86dd : 0x0800);
  const std::size_t ip = f.size();
  const std::uint16_t udp_len = std::uint16_t(8 + datagram.size());
  if (shape.ip_version == 6) {
    f.resize(ip + 40, 0);
    f[ip] = 0x60;
    put16(&f[ip + 4], udp_len);
    f[ip + 6] = 17;
    f[ip + 7] = 64;
    inet_pton(AF_INET6, "2001:db8::2", &f[ip + 8]);
    inet_pton(AF_INET6, "2001:db8::1", &f[ip + 24]);
  } else {
    f.resize(ip + 20, 0);
    f[ip] = 0x45;
    put16(&f[ip + 2], std::uint16_t(20 + udp_len));
    f[ip + 8] = 64;
    f[ip + 9] = 17;
    inet_pton(AF_INET, "10.1.2.2", &f[ip + 12]);
    inet_pton(AF_INET, "10.1.2.1", &f[ip + 16]);
  }
  const std::size_t udp = f.size();
  f.resize(udp + 8, 0);
  put16(&f[udp], kClientPort);
  put16(&f[udp + 2], protocol::kDefaultPort);
  put16(&f[udp + 4], udp_len);
  f.insert(f.end(), datagram.begin(), datagram.end());
  return f;
}

struct Built {
  std::vector<std::uint8_t> request;
  protocol::ParsedFrame parsed;
  ReplyContext ctx;
  Header reply;
  std::vector<std::uint8_t> frame;
};

Built build(const FrameShape& shape, const std::vector<std::uint8_t>& request_payload,
            const std::vector<std::uint8_t>& reply_payload, MessageType type = MessageType::response) {
  Built b;
  Header request;
  request.tenant_id = 3;
  request.agent_id = 9;
  request.session_key = 0x1122334455667788ull;
  request.request_id = 0xabcdef0123456789ull;
  request.trace_id = protocol::random_trace_id();
  request.span_id = protocol::random_span_id();
  request.trace_flags = protocol::kTraceSampled;
  request.deadline_us = 2500;
  b.request = request_frame(shape, request, request_payload);
  protocol::PacketParser parser{protocol::PacketConfig{}};
  b.parsed = parser.parse(b.request);
  EXPECT_EQ(b.parsed.reason, Reason::ok);
  auto datagram = protocol::PacketParser::datagram_of(b.request, b.parsed);
  const Header decoded = protocol::decode_header(datagram);
  EXPECT_TRUE(capture_context(b.request, b.parsed, decoded, 1'000'000, b.ctx));
  b.reply = type == MessageType::error
                ? protocol::make_error_reply(decoded, protocol::ErrorCode::worker_failed, protocol::random_span_id(), 7)
                : protocol::make_reply(decoded, type, protocol::random_span_id());
  b.reply.message_len = std::uint32_t(reply_payload.size());
  b.frame.assign(4096, 0xee);
  std::uint32_t n = build_reply_frame(b.ctx, b.reply, reply_payload, b.frame);
  b.frame.resize(n);
  return b;
}

// Everything a reply frame must satisfy, checked field by field against its request.
void check_reply(const Built& b, const FrameShape& shape, const std::vector<std::uint8_t>& payload) {
  const std::size_t l2 = 14 + 4 * shape.tags.size();
  const std::size_t ip_len = shape.ip_version == 6 ? 40 : 20;
  const std::size_t udp_len = 8 + protocol::kHeaderLen + payload.size();
  ASSERT_EQ(b.frame.size(), l2 + ip_len + udp_len);
  const std::uint8_t* f = b.frame.data();

  // L2: MACs exchanged, every tag and the ethertype exactly as received.
  EXPECT_EQ(std::memcmp(f, kClientMac, 6), 0) << "destination MAC is the requester's";
  EXPECT_EQ(std::memcmp(f + 6, kServerMac, 6), 0) << "source MAC is ours";
  EXPECT_EQ(std::memcmp(f + 12, b.request.data() + 12, l2 - 12), 0) << "VLAN tags and ethertype kept";

  const std::uint8_t* ip = f + l2;
  const std::uint8_t* req_ip = b.request.data() + l2;
  std::uint32_t pseudo = 0;
  if (shape.ip_version == 6) {
    EXPECT_EQ(ip[0] >> 4, 6);
    EXPECT_EQ(get16(ip + 4), udp_len) << "payload length";
    EXPECT_EQ(ip[6], 17) << "next header UDP";
    EXPECT_GT(ip[7], 0) << "hop limit";
    EXPECT_EQ(std::memcmp(ip + 8, req_ip + 24, 16), 0) << "source = request destination";
    EXPECT_EQ(std::memcmp(ip + 24, req_ip + 8, 16), 0) << "destination = request source";
    pseudo = sum16(ip + 8, 32) + 17 + std::uint32_t(udp_len);
  } else {
    EXPECT_EQ(ip[0], 0x45);
    EXPECT_EQ(get16(ip + 2), ip_len + udp_len) << "total length";
    EXPECT_EQ(get16(ip + 6) & 0x3fff, 0) << "never a fragment";
    EXPECT_GT(ip[8], 0) << "TTL";
    EXPECT_EQ(ip[9], 17);
    EXPECT_EQ(std::memcmp(ip + 12, req_ip + 16, 4), 0) << "source = request destination";
    EXPECT_EQ(std::memcmp(ip + 16, req_ip + 12, 4), 0) << "destination = request source";
    // Header checksum: the one's complement sum over the header, checksum included, is 0xffff.
    EXPECT_EQ(fold(sum16(ip, 20)), 0xffff) << "IPv4 header checksum";
    std::uint8_t copy[20];
    std::memcpy(copy, ip, 20);
    copy[10] = copy[11] = 0;
    EXPECT_EQ(get16(ip + 10), std::uint16_t(~fold(sum16(copy, 20)))) << "IPv4 header checksum recomputed";
    pseudo = sum16(ip + 12, 8) + 17 + std::uint32_t(udp_len);
  }

  const std::uint8_t* udp = ip + ip_len;
  EXPECT_EQ(get16(udp), protocol::kDefaultPort) << "source port = request destination port";
  EXPECT_EQ(get16(udp + 2), kClientPort) << "destination port = request source port";
  EXPECT_EQ(get16(udp + 4), udp_len);
  EXPECT_NE(get16(udp + 6), 0) << "the UDP checksum is always computed (mandatory on IPv6)";
  EXPECT_EQ(fold(sum16(udp, udp_len, pseudo)), 0xffff) << "UDP checksum over pseudo-header and segment";

  // AXP: the reply header as given, with the chunk's payload length, then the payload.
  std::span<const std::uint8_t> datagram(udp + 8, udp_len - 8);
  ASSERT_EQ(protocol::validate(datagram), Reason::ok);
  Header decoded = protocol::decode_header(datagram);
  Header expected = b.reply;
  expected.payload_len = std::uint16_t(payload.size());
  EXPECT_EQ(decoded, expected);
  auto body = protocol::payload_of(datagram);
  EXPECT_TRUE(std::equal(body.begin(), body.end(), payload.begin(), payload.end()));

  // And the shared classifier reads it back as a well-formed frame on the client's port.
  protocol::PacketConfig client_side;
  client_side.requests_only = false;
  client_side.ports = {kClientPort, 0, 0, 0};
  auto parsed = protocol::PacketParser{client_side}.parse(b.frame);
  EXPECT_EQ(parsed.reason, Reason::ok);
  EXPECT_EQ(parsed.info.vlan_count, shape.tags.size());
}

std::vector<std::uint8_t> bytes(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::uint8_t(seed * 7 + i * 13);
  return v;
}

class ReplyBuilderShapes : public ::testing::TestWithParam<FrameShape> {};

TEST_P(ReplyBuilderShapes, SwapsAddressesKeepsTagsAndChecksumsVerify) {
  const FrameShape shape = GetParam();
  for (std::size_t n : {0u, 1u, 13u, 64u, 1001u}) {  // odd sizes exercise the odd-byte sum
    SCOPED_TRACE("payload " + std::to_string(n));
    auto payload = bytes(n, std::uint8_t(n));
    Built b = build(shape, bytes(20, 1), payload);
    check_reply(b, shape, payload);
  }
  auto busy = build(shape, bytes(5, 2), {}, MessageType::busy);
  check_reply(busy, shape, {});
  auto error = build(shape, bytes(5, 3), {}, MessageType::error);
  check_reply(error, shape, {});
}

INSTANTIATE_TEST_SUITE_P(Frames, ReplyBuilderShapes,
                         ::testing::Values(FrameShape{4, {}}, FrameShape{4, {{0x8100, 0x2064}}},
                                           FrameShape{4, {{0x88a8, 0x0ffe}, {0x8100, 0xe001}}}, FrameShape{6, {}},
                                           FrameShape{6, {{0x8100, 0x0005}}},
                                           FrameShape{6, {{0x88a8, 0x0010}, {0x8100, 0x0020}}}),
                         [](const ::testing::TestParamInfo<FrameShape>& param_info) {
                           return "IPv" + std::to_string(param_info.param.ip_version) + "_" +
                                  std::to_string(param_info.param.tags.size()) + "tags";
                         });

TEST(ReplyBuilder, ChecksumsVerifyForRandomPayloads) {
  std::mt19937 rng(12345);
  for (int i = 0; i < 300; ++i) {
    FrameShape shape{i % 2 == 0 ? 4 : 6, {}};
    if (i % 3 == 0) shape.tags.push_back({0x8100, std::uint16_t(rng() & 0xffff)});
    std::vector<std::uint8_t> payload(rng() % 1400);
    for (auto& byte : payload) byte = std::uint8_t(rng());
    SCOPED_TRACE("iteration " + std::to_string(i));
    Built b = build(shape, bytes(8, 4), payload);
    ASSERT_NO_FATAL_FAILURE(check_reply(b, shape, payload));
  }
}

TEST(ReplyBuilder, CaptureContextRemembersWhereToAnswer) {
  FrameShape shape{4, {{0x8100, 0x0064}}};
  Built b = build(shape, bytes(10, 1), {});
  EXPECT_EQ(b.ctx.l2_len, 18);
  EXPECT_EQ(std::memcmp(b.ctx.l2, b.request.data(), 18), 0);
  EXPECT_EQ(b.ctx.ip_version, 4);
  EXPECT_EQ(ntohs(b.ctx.src_port), kClientPort) << "ports are kept in network order";
  EXPECT_EQ(ntohs(b.ctx.dst_port), protocol::kDefaultPort);
  EXPECT_TRUE(b.ctx.has_deadline);
  EXPECT_EQ(b.ctx.deadline_ns, 1'000'000u + 2500u * 1000u);
  EXPECT_EQ(b.ctx.answered, 0);
  EXPECT_EQ(b.ctx.request.request_id, 0xabcdef0123456789ull);
}

TEST(ReplyBuilder, RefusesAFrameThatDoesNotFit) {
  FrameShape shape{6, {{0x8100, 1}}};
  Built b = build(shape, bytes(10, 1), {});
  const std::uint32_t capacity = 512;
  const std::uint32_t max = max_reply_payload(b.ctx, capacity);
  EXPECT_EQ(max, capacity - (18 + 40 + 8 + protocol::kHeaderLen));
  auto payload = bytes(max, 9);
  std::vector<std::uint8_t> out(capacity);
  EXPECT_EQ(build_reply_frame(b.ctx, b.reply, payload, out), capacity) << "exactly full fits";
  payload.push_back(0);
  EXPECT_EQ(build_reply_frame(b.ctx, b.reply, payload, out), 0u) << "one byte more does not";
  EXPECT_EQ(max_reply_payload(b.ctx, 100), 0u) << "a frame smaller than the headers carries nothing";
}

}  // namespace
}  // namespace axon::dataplane
