// The userspace frame parser over the shared case table (the XDP program runs the same table in
// tests/bpf), plus what the parser reports about a frame besides its reason.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "axon/protocol/packet.h"

#include "packet_cases.h"

namespace axon::protocol {
namespace {

class ParserCase : public ::testing::TestWithParam<test::PacketCase> {};

TEST_P(ParserCase, ReasonMatchesTable) {
  const test::PacketCase& c = GetParam();
  PacketParser parser(test::case_parser_config());
  // An exactly-sized copy: in ASan builds any read past the frame fails the test.
  std::unique_ptr<std::uint8_t[]> exact(new std::uint8_t[c.frame.size()]);
  std::memcpy(exact.get(), c.frame.data(), c.frame.size());
  ParsedFrame parsed = parser.parse({exact.get(), c.frame.size()});
  EXPECT_EQ(parsed.reason, c.parse_reason)
      << "got " << to_string(parsed.reason) << ", want " << to_string(c.parse_reason);
}

TEST_P(ParserCase, AgreesWithXdpExpectationExceptForPolicy) {
  const test::PacketCase& c = GetParam();
  bool policy = c.xdp_reason == Reason::prefix_denied || c.xdp_reason == Reason::rate_limited ||
                c.xdp_reason == Reason::no_socket;
  if (policy)
    EXPECT_EQ(c.parse_reason, Reason::ok);
  else
    EXPECT_EQ(c.parse_reason, c.xdp_reason);
}

INSTANTIATE_TEST_SUITE_P(Table, ParserCase, ::testing::ValuesIn(test::packet_cases()),
                         [](const auto& test_info) { return test_info.param.name; });

TEST(PacketParser, EveryPrefixOfAValidFrameIsRejectedWithoutOverread) {
  test::FrameSpec spec;
  spec.vlan_tpids = {0x8100};
  auto frame = test::build_frame(spec);
  PacketParser parser(test::case_parser_config());
  for (std::size_t len = 0; len < frame.size(); ++len) {
    std::unique_ptr<std::uint8_t[]> exact(new std::uint8_t[len == 0 ? 1 : len]);
    if (len) std::memcpy(exact.get(), frame.data(), len);
    EXPECT_TRUE(is_drop(parser.parse({exact.get(), len}).reason)) << len;
  }
  EXPECT_TRUE(parser.parse(frame).ok());
}

TEST(PacketParser, ReportsOffsetsAddressesAndPorts) {
  test::FrameSpec spec;
  spec.vlan_tpids = {0x8100};
  spec.src_port = 51000;
  auto frame = test::build_frame(spec);
  PacketParser parser(test::case_parser_config());
  ParsedFrame parsed = parser.parse(frame);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.info.vlan_count, 1);
  EXPECT_EQ(parsed.info.ip_version, 4);
  EXPECT_EQ(parsed.info.l3_offset, 18);
  EXPECT_EQ(parsed.info.l4_offset, 38);
  EXPECT_EQ(parsed.info.axp_offset, 46);
  EXPECT_EQ(parsed.info.datagram_len, kHeaderLen + spec.payload.size());
  EXPECT_EQ(parsed.src_port(), 51000);
  EXPECT_EQ(parsed.dst_port(), 7400);
  EXPECT_EQ(parsed.tenant_id(), test::kAllowedTenant);
  const std::uint8_t src[4] = {10, 1, 2, 3};
  EXPECT_EQ(std::memcmp(parsed.info.src_addr, src, 4), 0);

  auto datagram = PacketParser::datagram_of(frame, parsed);
  EXPECT_EQ(validate_request(datagram), Reason::ok);
  Header h = decode_header(datagram);
  EXPECT_EQ(h.request_id, spec.axp.request_id);
  EXPECT_EQ(payload_of(datagram).size(), spec.payload.size());
}

TEST(PacketParser, Ipv6AddressesAreReported) {
  test::FrameSpec spec;
  spec.ip_version = 6;
  spec.src = "2001:db8::10";
  spec.dst = "2001:db8::1";
  auto frame = test::build_frame(spec);
  ParsedFrame parsed = PacketParser(test::case_parser_config()).parse(frame);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.info.ip_version, 6);
  EXPECT_EQ(parsed.info.src_addr[0], 0x20);
  EXPECT_EQ(parsed.info.src_addr[15], 0x10);
  EXPECT_EQ(parsed.info.dst_addr[15], 0x01);
}

TEST(PacketParser, ClientSideAcceptsReplies) {
  test::FrameSpec spec;
  spec.axp.type = MessageType::response;
  auto frame = test::build_frame(spec);
  PacketConfig client = test::case_parser_config();
  client.requests_only = false;
  EXPECT_EQ(PacketParser(client).parse(frame).reason, Reason::ok);
  EXPECT_EQ(PacketParser(test::case_parser_config()).parse(frame).reason, Reason::not_request);
}

TEST(PacketParser, DropAllFragmentsCoversLaterFragmentsAndOtherProtocols) {
  PacketConfig strict = test::case_parser_config();
  strict.drop_all_fragments = true;
  PacketParser parser(strict);

  test::FrameSpec later;
  later.ipv4_frag_off = 0x0010;
  EXPECT_EQ(parser.parse(test::build_frame(later)).reason, Reason::ip_fragment);

  test::FrameSpec tcp;
  tcp.ip_protocol = 6;
  tcp.ipv4_frag_off = 0x2000;
  EXPECT_EQ(parser.parse(test::build_frame(tcp)).reason, Reason::ip_fragment);

  test::FrameSpec v6;
  v6.ip_version = 6;
  v6.src = "2001:db8::10";
  v6.dst = "2001:db8::1";
  v6.ipv6_fragment = 0x0100;  // a later fragment
  EXPECT_EQ(parser.parse(test::build_frame(v6)).reason, Reason::ip_fragment);
  EXPECT_EQ(PacketParser(test::case_parser_config()).parse(test::build_frame(v6)).reason, Reason::pass_not_axp);
}

TEST(PacketParser, PortZeroNeverMatchesAnUnusedSlot) {
  test::FrameSpec spec;
  spec.dst_port = 0;
  EXPECT_EQ(PacketParser(test::case_parser_config()).parse(test::build_frame(spec)).reason, Reason::pass_not_axp);
}

TEST(PacketParser, ConfigConvertsToNetworkOrder) {
  PacketConfig config;
  config.ports = {7400, 0, 0, 0};
  config.requests_only = true;
  config.drop_all_fragments = true;
  axon_config c = config.to_c();
  EXPECT_EQ(c.ports[0], axon_htons(7400));
  EXPECT_EQ(c.flags, AXON_CFG_REQUESTS_ONLY | AXON_CFG_DROP_ALL_FRAGMENTS);
}

}  // namespace
}  // namespace axon::protocol
