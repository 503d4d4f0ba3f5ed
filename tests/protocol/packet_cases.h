// Test frames and the shared case table: one list of frames, each with what the userspace parser
// must say and what the XDP program must do with it. tests/protocol runs the parser over it and
// tests/bpf runs the loaded XDP program over it, so the two are held to the same answers.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "axon/protocol/axp.h"
#include "axon/protocol/packet.h"

namespace axon::test {

// Everything a test frame can vary. Defaults: untagged IPv4 UDP from 10.1.2.3:40000 to
// 10.9.9.9:7400 carrying a valid single-segment REQUEST of tenant kAllowedTenant.
struct FrameSpec {
  int ip_version = 4;
  std::vector<std::uint16_t> vlan_tpids;  // one entry per VLAN tag, outermost first
  std::uint16_t ethertype = 0;            // 0 = derived from ip_version
  std::uint8_t ip_protocol = 17;
  std::string src = "10.1.2.3";
  std::string dst = "10.9.9.9";
  std::uint8_t ipv4_ihl = 5;                   // >5 adds zeroed option words
  std::uint8_t ip_version_nibble = 0;          // 0 = ip_version; else written as is
  std::uint16_t ipv4_frag_off = 0;             // flags and offset field, host order
  std::optional<std::uint16_t> ipv6_fragment;  // adds a fragment header with this offset/M field
  std::optional<std::uint16_t> ip_length;      // overrides IPv4 total / IPv6 payload length
  std::uint16_t src_port = 40000;
  std::uint16_t dst_port = protocol::kDefaultPort;
  std::optional<std::uint16_t> udp_length;  // overrides the UDP length field
  protocol::Header axp = default_header();
  std::vector<std::uint8_t> payload = std::vector<std::uint8_t>(32, 0xAB);
  std::function<void(std::vector<std::uint8_t>&)> mutate_datagram;  // edit AXP bytes after encoding
  std::optional<std::size_t> cut_frame_to;                          // truncate the finished frame
  std::size_t trailing_bytes = 0;                                   // bytes after the IP datagram (padding, FCS)

  static protocol::Header default_header();
};

[[nodiscard]] std::vector<std::uint8_t> build_frame(const FrameSpec& spec);
// The UDP payload (AXP header + payload) the spec would carry.
[[nodiscard]] std::vector<std::uint8_t> build_datagram(const FrameSpec& spec);

// The XDP fixture all cases assume: these ports, allowlist and rate enforcement on, and valid
// requests delivered to the kernel (so a test run shows XDP_PASS for them, counted as ok).
inline constexpr std::array<std::uint16_t, AXON_MAX_PORTS> kCasePorts{7400, 7401, 0, 0};
inline constexpr std::uint32_t kAllowedTenant = 1;
inline constexpr const char* kAllowedV4 = "10.0.0.0/8";
inline constexpr const char* kAllowedV6 = "2001:db8::/32";
inline constexpr std::uint32_t kUnknownTenant = 99;

// The XDP verdicts, as enum xdp_action numbers (kept here to spare tests the uapi header).
inline constexpr std::uint32_t kXdpDrop = 1;
inline constexpr std::uint32_t kXdpPass = 2;
inline constexpr std::uint32_t kXdpRedirect = 4;

struct PacketCase {
  std::string name;  // gtest-safe: letters, digits and underscores
  std::vector<std::uint8_t> frame;
  protocol::Reason parse_reason;  // what PacketParser says
  protocol::Reason xdp_reason;    // the one counter the XDP fixture increments
  std::uint32_t xdp_action;       // the XDP fixture's verdict
  bool test_run_accepts = true;   // BPF_PROG_TEST_RUN refuses frames shorter than 14 bytes
};

[[nodiscard]] const std::vector<PacketCase>& packet_cases();

// The parser configuration matching the XDP fixture.
[[nodiscard]] protocol::PacketConfig case_parser_config();

}  // namespace axon::test
